"""The scenarios folder as the engine sees it: the routing rules, each routed
file's compiled code, and what is wrong with the files that do not compile.
``refresh()`` picks up added, removed, renamed and edited files and routes.toml
edits, so a new scenario is dialable without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.logger import Logger

from voxlab.engine.routing import RoutingRules, folder_state

log = Logger()


def describe_compile_error(path: Path, exc: BaseException) -> str:
    """One line a user can act on: ``file:line: message`` for a syntax error."""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename or path}:{exc.lineno}" if exc.lineno else str(exc.filename or path)
        text = (exc.text or "").strip()
        return f"{where}: {exc.msg}" + (f": {text}" if text else "")
    return f"{path}: {type(exc).__name__}: {exc}"


class ScenarioCatalog:
    """Routing rules plus compiled scenario code, kept in step with the folder on disk."""

    def __init__(self, scenarios_dir: Path, explicit_routes: list[tuple[str, str]] = ()) -> None:
        self.scenarios_dir = Path(scenarios_dir)
        self.explicit = list(explicit_routes)
        # At start-up a bad rule is a configuration error (the server does not start).
        self.rules = RoutingRules.load(self.scenarios_dir, self.explicit)
        self.routes_error: str | None = None
        self.errors: dict[Path, str] = {}
        self._compiled: dict[Path, tuple[int, Any]] = {}
        self._state = self._folder_state()
        self.check()

    def _folder_state(self) -> tuple:
        return folder_state(self.scenarios_dir, self.rules.scenarios())

    # -- lookups
    def match(self, user: str) -> Path | None:
        return self.rules.match(user)

    def rule_for(self, user: str):
        return self.rules.rule_for(user)

    def get(self, path: Path, force: bool = False):
        """The compiled code of a scenario file, compiled again only when the file changed."""
        mtime = path.stat().st_mtime_ns
        hit = self._compiled.get(path)
        if hit is not None and hit[0] == mtime and not force:
            return hit[1]
        try:
            code = compile(path.read_text(), str(path), "exec")
        except Exception as exc:       # syntax error, not UTF-8, unreadable ...
            self._set_error(path, describe_compile_error(path, exc))
            raise
        self._compiled[path] = (mtime, code)
        self._set_error(path, None)
        return code

    # -- keeping up with the folder
    def check(self) -> None:
        """Compile every routed scenario; each broken one is logged once, at once."""
        routed = set(self.rules.scenarios())
        for path in list(self.errors):
            if path not in routed:
                del self.errors[path]
        for path in list(self._compiled):
            if path not in routed:
                del self._compiled[path]
        for path in self.rules.scenarios():
            try:
                self.get(path)
            except Exception:
                pass

    def _set_error(self, path: Path, error: str | None) -> None:
        before = self.errors.get(path)
        if error is None:
            if before is not None:
                del self.errors[path]
                log.info("scenario {path} compiles again", path=str(path))
            return
        self.errors[path] = error
        if error != before:
            log.error("scenario {path} is broken, calls to it get 500: {error}",
                      path=str(path), error=error)

    def refresh(self) -> bool:
        """Re-read the folder when anything in it changed; True when the routing table changed."""
        state = self._folder_state()
        if state == self._state:
            return False
        before = self.rules.describe()
        try:
            rules = RoutingRules.load(self.scenarios_dir, self.explicit)
        except ValueError as exc:
            if str(exc) != self.routes_error:
                log.error("routing not changed: {error}", error=str(exc))
            self.routes_error = str(exc)
            rules = self.rules
        else:
            self.routes_error = None
            self.rules = rules
        self.check()
        # Files only the old rules named may be gone: don't look at them again.
        self._state = self._folder_state()
        changed = rules.describe() != before
        if changed:
            self.log_table("routing changed")
        return changed

    def log_table(self, heading: str) -> None:
        log.info("{heading}: {count} rule(s)", heading=heading, count=len(self.rules.rules))
        for line in self.rules.describe():
            log.info("route {rule}", rule=line)

    def summary(self) -> dict:
        """The routing table and its problems, as the console shows them."""
        return {"scenarios_dir": str(self.scenarios_dir),
                "rules": [{"pattern": r.pattern.pattern, "scenario": str(r.scenario), "origin": r.origin,
                           "error": self.errors.get(r.scenario)} for r in self.rules.rules],
                "errors": {str(p): e for p, e in self.errors.items()},
                "routes_error": self.routes_error}
