"""Routing rules: which scenario file a dialled user part runs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    """A regex that must match the WHOLE dialled user part, and the scenario file it starts."""

    pattern: re.Pattern[str]
    scenario: Path

    def __str__(self) -> str:
        return f"{self.pattern.pattern} -> {self.scenario.name}"


class RoutingRules:
    """Ordered rules, first match wins: explicit rules first, then one per scenario file by its name."""

    def __init__(self, scenarios_dir: Path, explicit: list[tuple[str, str]] = ()) -> None:
        self.scenarios_dir = Path(scenarios_dir)
        self.rules: list[Rule] = []
        for pattern, scenario in explicit:
            path = Path(scenario)
            if not path.is_absolute():
                path = self.scenarios_dir / path
            if not path.exists():
                raise ValueError(f"routing rule {pattern!r}: scenario file {path} does not exist")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"routing rule {pattern!r}: bad regex: {exc}") from None
            self.rules.append(Rule(compiled, path))
        if self.scenarios_dir.is_dir():
            for path in sorted(self.scenarios_dir.glob("*.py")):
                if not path.name.startswith("_"):
                    self.rules.append(Rule(re.compile(re.escape(path.stem)), path))

    def match(self, user: str) -> Path | None:
        for rule in self.rules:
            if rule.pattern.fullmatch(user):
                return rule.scenario
        return None
