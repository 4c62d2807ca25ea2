"""Completion from a live namespace: names, and attributes of live objects (``call.se`` -> ``send_media_to``).

Completing must not have side effects, so the object before the dot is never
evaluated: names are looked up in the namespace, attributes are found with
``inspect.getattr_static`` (no property getter, no other descriptor, no
``__getattr__`` runs: an attribute that would need one gives no completions),
and a subscript is followed only with a literal key on a plain list, tuple or
dict (``calls[0].st``, ``units["x"].na``). Anything else (``f().x``) is not
completed. The little that does run (``dir()``, ``__dir__``) runs under a
short time budget.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import keyword
import re
import types
from typing import Any

from voxlab.engine.budget import BudgetExceeded, time_budget

_MAX = 200

# Descriptors implemented in C by the interpreter: binding or reading them runs no Python code.
_SAFE_DESCRIPTORS = (types.FunctionType, staticmethod, classmethod, types.BuiltinFunctionType,
                     types.MethodDescriptorType, types.ClassMethodDescriptorType,
                     types.WrapperDescriptorType, types.MemberDescriptorType, types.GetSetDescriptorType)
_RST = re.compile(r"(?::[\w:.-]+:)?``?([^`]+)``?")      # ``code``, :func:`name`, `text`


class _NotStatic(LookupError):
    """Getting this attribute would run code (a property, a custom descriptor, __getattr__...)."""

    def __init__(self, name: str, static: Any = None) -> None:
        super().__init__(name)
        self.static = static


def _split(line: str) -> tuple[str | None, str]:
    """'x = call.se' -> ('call', 'se'); 'pri' -> (None, 'pri'); 'calls[0].st' -> ('calls[0]', 'st')."""
    match = re.search(r"\w*$", line)
    prefix = match.group(0)
    i = match.start()
    if i == 0 or line[i - 1] != ".":
        return None, prefix
    end = i - 1
    k = end
    depth = 0
    while k > 0:
        c = line[k - 1]
        if c in ")]}":
            depth += 1
        elif c in "([{":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and not (c.isalnum() or c in "_."):
            break
        k -= 1
    base = line[k:end]
    return (base or None), prefix


def _own_dict(obj: Any) -> dict | None:
    try:
        d = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return None
    return d if isinstance(d, dict) else None


def static_attribute(obj: Any, name: str) -> Any:
    """``getattr(obj, name)`` when that runs no code of the object's (else _NotStatic;
    AttributeError when there is no such attribute, ``__getattr__`` not being asked)."""
    static = inspect.getattr_static(obj, name)
    own = _own_dict(obj)
    if own is not None and own.get(name, _NotStatic) is static and not isinstance(obj, type):
        return static                     # an instance's (or a module's) own value: no binding
    if isinstance(obj, type):
        if isinstance(static, (staticmethod, classmethod)):
            return static.__get__(None, obj)
        if any(static is vars(k).get(name, _NotStatic) for k in obj.__mro__):
            return static                 # from the class: functions and descriptors as stored
    if not hasattr(type(static), "__get__"):
        return static                     # a plain class attribute
    if isinstance(static, _SAFE_DESCRIPTORS):
        return static.__get__(obj, type(obj))
    raise _NotStatic(name, static)


def _subscript(obj: Any, key: Any) -> Any:
    # Only the built-in containers' own lookup (a subclass may override it; a defaultdict
    # would insert the key), and only a key that is there.
    if isinstance(obj, (list, tuple, str)) and isinstance(key, int):
        for kind in (list, tuple, str):
            if isinstance(obj, kind) and type(obj).__getitem__ is kind.__getitem__:
                return kind.__getitem__(obj, key)
    if isinstance(obj, dict) and type(obj).__getitem__ is dict.__getitem__ and dict.__contains__(obj, key):
        return dict.__getitem__(obj, key)
    raise LookupError("not a plain list, tuple or dict subscript")


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int)):
        return -node.operand.value
    raise LookupError("not a literal key")


def _walk(node: ast.expr, namespace: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in namespace:
            return namespace[node.id]
        if node.id in vars(builtins):
            return vars(builtins)[node.id]
        raise LookupError(node.id)
    if isinstance(node, ast.Attribute):
        return static_attribute(_walk(node.value, namespace), node.attr)
    if isinstance(node, ast.Subscript):
        return _subscript(_walk(node.value, namespace), _literal(node.slice))
    raise LookupError("not evaluated: it may have side effects")


def _resolve(base: str, namespace: dict[str, Any]) -> Any:
    """The object ``base`` (``call``, ``session.engine``, ``calls[0]``) names, without running its code."""
    try:
        tree = ast.parse(base.strip(), mode="eval")
    except SyntaxError:
        raise LookupError(base) from None
    return _walk(tree.body, namespace)


def _first_line(doc: str | None) -> str:
    """The first line of a docstring, with reST markup (````code````, ``:func:`x```) as plain text."""
    lines = (doc or "").strip().splitlines()
    return _RST.sub(r"\1", lines[0])[:80] if lines else ""


def _describe(obj: Any, name: str) -> tuple[str, str, str]:
    """(kind, signature, first doc line) of ``obj.name`` without running properties."""
    try:
        value = static_attribute(obj, name)
    except _NotStatic as exc:        # a property, cached_property...: described, never run
        return "property", "", _first_line(getattr(exc.static, "__doc__", None))
    except AttributeError:
        return "attribute", "", ""
    return _describe_value(value)


def _describe_value(value: Any) -> tuple[str, str, str]:
    if inspect.isclass(value):
        kind = "class"
    elif inspect.ismethod(value) or inspect.ismethoddescriptor(value) or inspect.isbuiltin(value):
        kind = "method"
    elif inspect.isfunction(value):
        kind = "function"
    elif inspect.ismodule(value):
        kind = "module"
    else:
        return type(value).__name__, "", ""
    signature = ""
    try:
        sig = inspect.signature(value)
        # annotations are mostly strings here (postponed evaluation): show names only
        sig = sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                      for p in sig.parameters.values()],
                          return_annotation=inspect.Signature.empty)
        signature = str(sig)
    except (TypeError, ValueError):
        pass
    doc = inspect.getdoc(value) if kind != "class" or value.__doc__ else None
    return kind, signature, _first_line(doc)


def complete(source: str, cursor: int | None, namespace: dict[str, Any],
             budget: float = 0.5) -> list[dict[str, Any]]:
    """Completions at ``cursor`` in ``source``: dicts with ``text`` (the whole word to insert),
    ``start`` (negative offset from the cursor where it replaces), ``display``, ``kind``, ``meta``."""
    if cursor is None:
        cursor = len(source)
    line = source[:cursor].rsplit("\n", 1)[-1]
    base, prefix = _split(line)
    private = prefix.startswith("_")
    out: list[dict[str, Any]] = []
    if base is not None:
        try:
            with time_budget(budget):         # dir() may run a __dir__ of the object's own
                obj = _resolve(base, namespace)
                names = sorted(set(dir(obj)))
                for name in names:
                    if not name.startswith(prefix) or (name.startswith("_") and not private):
                        continue
                    kind, signature, doc = _describe(obj, name)
                    out.append({"text": name, "start": -len(prefix), "display": name + signature,
                                "kind": kind, "meta": doc or kind})
                    if len(out) >= _MAX:
                        break
        except (Exception, BudgetExceeded):
            return []
        return out
    if not prefix:
        return []
    seen: set[str] = set()
    for source_names, where in ((namespace, "namespace"), (vars(builtins), "builtin")):
        for name in sorted(source_names):
            if name in seen or not name.startswith(prefix) or (name.startswith("_") and not private):
                continue
            seen.add(name)
            kind, signature, doc = _describe_value(source_names[name])
            out.append({"text": name, "start": -len(prefix), "display": name + signature,
                        "kind": kind, "meta": doc or (kind if where == "namespace" else f"builtin {kind}")})
    for name in keyword.kwlist:
        if name.startswith(prefix) and name not in seen:
            out.append({"text": name, "start": -len(prefix), "display": name, "kind": "keyword",
                        "meta": "keyword"})
    return out[:_MAX]
