"""Completion from a live namespace: names, and attributes of live objects (``call.se`` -> ``send_media_to``).

The object before the dot is found by name lookup and ``getattr`` (for a
dotted name) or, for expressions with subscripts such as ``calls[0].st``, by
evaluating that expression under a short time budget. Expressions with a call
in them (``f().x``) are never evaluated: completing must not have side effects.
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
from typing import Any

from voxlab.engine.budget import BudgetExceeded, time_budget

_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_MAX = 200


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


def _resolve(base: str, namespace: dict[str, Any], budget: float) -> Any:
    if _DOTTED.fullmatch(base):
        first, *rest = base.split(".")
        if first in namespace:
            obj = namespace[first]
        elif hasattr(builtins, first):
            obj = getattr(builtins, first)
        else:
            raise LookupError(first)
        for part in rest:
            obj = getattr(obj, part)
        return obj
    if "(" in base or ":=" in base:
        raise LookupError("not evaluated: it may have side effects")
    with time_budget(budget):
        return eval(base, namespace)  # noqa: S307 - the console is code execution by design


def _describe(obj: Any, name: str) -> tuple[str, str, str]:
    """(kind, signature, first doc line) of ``obj.name`` without running properties."""
    try:
        static = inspect.getattr_static(obj, name)
    except AttributeError:
        static = None
    if isinstance(static, property):
        doc = (static.__doc__ or "").strip().splitlines()
        return "property", "", doc[0] if doc else ""
    value = static
    if inspect.isfunction(static) or isinstance(static, (staticmethod, classmethod)) or inspect.ismethoddescriptor(static):
        try:
            value = getattr(obj, name)
        except Exception:
            value = static
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
    doc = (inspect.getdoc(value) or "").strip().splitlines() if kind != "class" or value.__doc__ else []
    return kind, signature, doc[0][:80] if doc else ""


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
            obj = _resolve(base, namespace, budget)
        except (Exception, BudgetExceeded):
            return []
        try:
            names = sorted(set(dir(obj)))
        except Exception:
            return []
        for name in names:
            if not name.startswith(prefix) or (name.startswith("_") and not private):
                continue
            kind, signature, doc = _describe(obj, name)
            out.append({"text": name, "start": -len(prefix), "display": name + signature,
                        "kind": kind, "meta": doc or kind})
            if len(out) >= _MAX:
                break
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
