"""``reload()``: re-run a scenario file's current code in its live session.

What happens, in order (docs/console.md, "reload semantics"):

1. The file is read and compiled again (a syntax error stops here: nothing changes).
2. VoxEngine's app-level listeners are set aside, because the re-run file
   registers its own again (otherwise every listener would be doubled).
3. The file runs again in the live namespace, exactly like the first time:
   every top-level statement is executed, so module-level assignments are
   re-done (a constant takes its new value; ``state = {}`` starts empty
   again; write ``state = globals().get("state", {})`` to keep it).
   If it raises (or the budget interrupts it), the namespace is put back as
   it was -- every name the file had assigned or added so far -- and so are
   the old app-level listeners: the old code keeps running, and the live
   listeners stay the very objects later reloads update (step 4).
4. Top-level functions of the file keep their identity and get the new code
   (``__code__``, defaults, docstring, ``__dict__``): whatever refers to them
   (listeners on live calls, VoxEngine, timers, dicts) runs the new code at
   its next call. The namespace name keeps pointing to that same object.
5. Nested functions and lambdas registered as listeners on the session's
   event targets (VoxEngine, calls, other units) get the new code of the
   function at the same place in the new file (same qualified name, same
   position among equally named ones) when it captures the same variables;
   their captured variables (closure cells) keep their live values. Every
   reload leaves them on a code object of the file's latest run, also when
   their code did not change, so the next reload finds them again.
   Otherwise they keep the old code, and the report says so. The report
   counts only code that changed (moving to other lines is no change).
6. Everything else survives untouched: calls, units, media routes, the
   session's state, names defined at the console, and classes' existing
   instances (a redefined class is a new class; old instances keep the old one).
"""

from __future__ import annotations

import types
from collections import defaultdict
from typing import Any, Iterable

from voxlab.engine.budget import shielded
from voxlab.engine.events import EventTarget

FAILED_NOTE = "reload() failed: nothing changed; the old code keeps running."


def _code_tree(code: types.CodeType) -> dict[str, list[types.CodeType]]:
    """Every function code object inside ``code``, by qualified name, in source order."""
    out: dict[str, list[types.CodeType]] = defaultdict(list)

    def walk(c: types.CodeType) -> None:
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                out[const.co_qualname].append(const)
                walk(const)

    walk(code)
    return out


def _codes_under(functions: Iterable[types.FunctionType]) -> dict[str, list[types.CodeType]]:
    out: dict[str, list[types.CodeType]] = defaultdict(list)
    for fn in functions:
        out[fn.__code__.co_qualname].append(fn.__code__)
        for name, codes in _code_tree(fn.__code__).items():
            out[name].extend(codes)
    return out


def _event_targets(session: Any) -> list[EventTarget]:
    seen: dict[int, EventTarget] = {}
    candidates: list[Any] = [session.voxengine, *session.calls, *session.units.values(),
                             *session.namespace.values()]
    for obj in candidates:
        if isinstance(obj, EventTarget) and id(obj) not in seen:
            seen[id(obj)] = obj
    return list(seen.values())


def _listener_lists(targets: Iterable[EventTarget]) -> Iterable[list]:
    for target in targets:
        for handlers in getattr(target, "_listeners", {}).values():
            yield handlers


def _update_function(old: types.FunctionType, new: types.FunctionType) -> None:
    old.__code__ = new.__code__
    old.__defaults__ = new.__defaults__
    old.__kwdefaults__ = new.__kwdefaults__
    old.__doc__ = new.__doc__
    old.__annotations__ = new.__annotations__
    old.__dict__.update(new.__dict__)


@shielded
def _restore(ns: dict[str, Any], saved_ns: dict[str, Any], voxengine: Any,
             saved_app: dict[str, list]) -> None:
    # Shielded: after a budget expiry the alarm repeats, and a restore cut half-way would
    # leave the namespace torn. Same dict object: the functions' __globals__ is this dict.
    ns.clear()
    ns.update(saved_ns)
    voxengine._listeners.clear()
    voxengine._listeners.update(saved_app)


def reload_scenario(session: Any) -> str:
    """Re-run the session's scenario file in its namespace; returns a report of what changed.

    Must run in the reactor thread with the session marked current (the console does both)."""
    engine = session.engine
    path = session.scenario_path
    filename = str(path)
    ns = session.namespace
    try:
        code = engine.scenarios.get(path, force=True)   # SyntaxError / OSError: nothing changed yet
    except BaseException as exc:
        exc.add_note(FAILED_NOTE)
        raise

    def from_file(obj: Any) -> bool:
        return (isinstance(obj, types.FunctionType) and obj.__globals__ is ns
                and obj.__code__.co_filename == filename)

    old_functions = {name: fn for name, fn in ns.items()
                     if from_file(fn) and "<locals>" not in fn.__qualname__}
    old_codes = _codes_under(old_functions.values())
    voxengine = session.voxengine
    saved_app = {event: list(handlers) for event, handlers in voxengine._listeners.items()}
    saved_ns = dict(ns)
    voxengine._listeners.clear()
    try:
        exec(code, ns)
    except BaseException as exc:
        # Put the namespace back too, not only the listeners: otherwise it would hold the
        # half-run file's new function objects, while live calls' listeners still are the
        # old ones, and no later reload would ever update those again.
        exc.add_note(FAILED_NOTE)
        _restore(ns, saved_ns, voxengine, saved_app)
        raise
    return _apply(session, path, filename, old_functions, old_codes, from_file)


def _normal(code: types.CodeType) -> types.CodeType:
    """``code`` without its positions (first line, line table), nested code objects too."""
    consts = tuple(_normal(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=1, co_linetable=b"", co_consts=consts)


def same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Do ``a`` and ``b`` do the same thing? Equal code that only moved to other lines is the same."""
    if a is b:
        return True
    try:
        return _normal(a) == _normal(b)
    except (TypeError, ValueError):       # cannot be normalised: compare as they are
        return a == b


def _same_defaults(old: types.FunctionType, new: types.FunctionType) -> bool:
    try:
        return bool(old.__defaults__ == new.__defaults__ and old.__kwdefaults__ == new.__kwdefaults__)
    except Exception:                     # an odd default's __eq__: call it changed
        return False


def _counted(items: list[str]) -> list[str]:
    """Each distinct item once, in first-seen order, with a count when it repeats."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return [item if n == 1 else f"{item} [{n} listeners]" for item, n in counts.items()]


@shielded
def _apply(session: Any, path: Any, filename: str, old_functions: dict[str, types.FunctionType],
           old_codes: dict[str, list[types.CodeType]], from_file: Any) -> str:
    """Steps 4 and 5, after the file ran: shielded from the budget, so that an expiry never
    leaves some live listeners on the old code and others on the new."""
    ns = session.namespace
    voxengine = session.voxengine

    # 4. top-level functions: same objects, new code (also when it did not change: the
    # object then holds the code object of this run, which the next reload finds its
    # nested functions in)
    updated: list[str] = []
    unchanged = 0
    replaced: dict[int, types.FunctionType] = {}
    for name, old in old_functions.items():
        new = ns.get(name)
        if new is old or not from_file(new):
            continue
        changed = not (same_code(old.__code__, new.__code__) and _same_defaults(old, new))
        try:
            _update_function(old, new)
        except ValueError:          # e.g. it became a closure: keep the new object as it is
            continue
        replaced[id(new)] = old
        ns[name] = old
        if changed:
            updated.append(name)
        else:
            unchanged += 1
    targets = _event_targets(session)
    for handlers in _listener_lists(targets):
        for i, fn in enumerate(handlers):
            if id(fn) in replaced:
                handlers[i] = replaced[id(fn)]

    # 5. nested functions and lambdas registered as listeners
    new_codes = _codes_under(fn for fn in (ns.get(n) for n in old_functions) if from_file(fn))
    for name, fn in ns.items():
        if from_file(fn) and "<locals>" not in fn.__qualname__ and name not in old_functions:
            for qual, codes in _codes_under([fn]).items():
                new_codes[qual].extend(codes)
    nested_updated: list[str] = []
    kept: list[str] = []
    done: set[int] = set()
    for handlers in _listener_lists(targets):
        for fn in handlers:
            if id(fn) in done or not from_file(fn) or "<locals>" not in fn.__qualname__:
                continue
            done.add(id(fn))
            code = fn.__code__
            qual = code.co_qualname
            olds = old_codes.get(qual, [])
            news = new_codes.get(qual, [])
            # Where it is in the old file: by identity (every reload leaves each live listener
            # on a code object of the file's latest run), else by equality (one equal only).
            places = [i for i, c in enumerate(olds) if c is code] or \
                     [i for i, c in enumerate(olds) if same_code(c, code)]
            if len(places) == 1 and len(olds) == len(news):
                new = news[places[0]]
                if new.co_freevars != code.co_freevars:
                    kept.append(f"{qual} (captures different variables now)")
                    continue
                fn.__code__ = new           # the code of this run, even when it did not change
                if not same_code(new, code):
                    nested_updated.append(qual)
                continue
            # Not at a known place: still current if the new file has the very same code.
            same = next((c for c in news if same_code(c, code) and c.co_freevars == code.co_freevars),
                        None)
            if same is not None:
                fn.__code__ = same
                continue
            kept.append(f"{qual} (not found at the same place in the new file)")

    app = sum(len(h) for h in voxengine._listeners.values())
    lines = [f"reloaded {path.name}: {len(updated)} function(s) updated"
             + (f" ({', '.join(updated)})" if updated else "")
             + (f", {unchanged} unchanged" if unchanged else "")]
    if nested_updated:
        lines.append(f"  live nested handlers updated: {'; '.join(_counted(nested_updated))}")
    if kept:
        lines.append(f"  kept old code: {'; '.join(_counted(kept))}")
    lines.append(f"  VoxEngine app listeners: {app} (registered by the re-run file)")
    return "\n".join(lines)
