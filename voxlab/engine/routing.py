"""Routing rules: which scenario file a dialled user part runs, and the scenarios
folder they come from, re-read when it changes (no restart needed)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROUTES_FILE = "routes.toml"


@dataclass(frozen=True)
class Rule:
    """A regex that must match the WHOLE dialled user part, and the scenario file it starts."""

    pattern: re.Pattern[str]
    scenario: Path
    origin: str = "file"        # "config", "routes.toml" or "file" (one rule per scenario file)
    auth: bool = False          # callers must authenticate as a registered user (407 first)

    def __str__(self) -> str:
        return (f"{self.pattern.pattern} -> {self.scenario.name}"
                + ("  [auth]" if self.auth else ""))


RouteSpec = tuple  # (pattern, scenario) or (pattern, scenario, auth)


def parse_routes(entries: object, where: str) -> list[RouteSpec]:
    """The ``[[routes]]`` tables of a TOML file (``pattern``, ``scenario``, optional
    ``auth``) as (pattern, scenario, auth); ValueError names the problem."""
    rules = []
    for rule in entries if isinstance(entries, list) else []:
        if not isinstance(rule, dict) or "pattern" not in rule or "scenario" not in rule:
            raise ValueError(f"{where}: each [[routes]] needs 'pattern' and 'scenario'")
        auth = rule.get("auth", False)
        if not isinstance(auth, bool):
            raise ValueError(f"{where}: route {rule['pattern']!r}: auth is true or false, not {auth!r}")
        rules.append((str(rule["pattern"]), str(rule["scenario"]), auth))
    return rules


def read_routes_file(path: Path) -> list[RouteSpec]:
    """The ``[[routes]]`` of a routes.toml; ValueError names the problem."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return parse_routes(data.get("routes", []), str(path))


class RoutingRules:
    """Ordered rules, first match wins: explicit rules first (the config's, then
    routes.toml's), then one per scenario file by its name."""

    def __init__(self, scenarios_dir: Path, explicit: list[RouteSpec] = (),
                 from_routes_file: list[RouteSpec] = ()) -> None:
        self.scenarios_dir = Path(scenarios_dir)
        self.rules: list[Rule] = []
        for origin, pairs in (("config", explicit), (ROUTES_FILE, from_routes_file)):
            for pattern, scenario, *auth in pairs:
                path = Path(scenario)
                if not path.is_absolute():
                    path = self.scenarios_dir / path
                if not path.exists():
                    raise ValueError(f"routing rule {pattern!r}: scenario file {path} does not exist")
                try:
                    compiled = re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"routing rule {pattern!r}: bad regex: {exc}") from None
                self.rules.append(Rule(compiled, path, origin, bool(auth and auth[0])))
        for path in scenario_files(self.scenarios_dir):
            self.rules.append(Rule(re.compile(re.escape(path.stem)), path))

    @classmethod
    def load(cls, scenarios_dir: Path, explicit: list[RouteSpec] = ()) -> "RoutingRules":
        """The rules of the config plus the folder's routes.toml (when there is one) and files."""
        routes_file = Path(scenarios_dir) / ROUTES_FILE
        extra = read_routes_file(routes_file) if routes_file.exists() else []
        return cls(scenarios_dir, explicit, extra)

    def match(self, user: str) -> Path | None:
        rule = self.rule_for(user)
        return rule.scenario if rule is not None else None

    def rule_for(self, user: str) -> Rule | None:
        """The first rule whose pattern matches all of ``user``."""
        for rule in self.rules:
            if rule.pattern.fullmatch(user):
                return rule
        return None

    def scenarios(self) -> list[Path]:
        """Every scenario file some rule routes to, once each, in rule order."""
        return list(dict.fromkeys(rule.scenario for rule in self.rules))

    def describe(self) -> list[str]:
        return [str(rule) + ("" if rule.origin == "file" else f"  ({rule.origin})") for rule in self.rules]


def scenario_files(scenarios_dir: Path) -> list[Path]:
    """The scenario files of a folder: ``*.py`` not starting with ``_``, sorted."""
    if not Path(scenarios_dir).is_dir():
        return []
    return sorted(p for p in Path(scenarios_dir).glob("*.py") if not p.name.startswith("_"))


def folder_state(scenarios_dir: Path, also: list[Path] = ()) -> tuple:
    """What changes when a scenario file or routes.toml is added, removed, renamed or
    edited: names with their modification times and sizes (cheap: one stat each)."""
    entries = []
    paths = list(scenario_files(scenarios_dir)) + [Path(scenarios_dir) / ROUTES_FILE] + list(also)
    for path in dict.fromkeys(paths):
        try:
            st = os.stat(path)
        except OSError:
            continue
        entries.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(entries)
