"""Fixtures of the ``voxlab phone`` tests: phone processes that are always stopped."""

from __future__ import annotations

import pytest

from tests.phone.helpers import PhoneProcess, phone_env


@pytest.fixture
def phone(tmp_path):
    """Factory: ``phone(args, env=None)`` starts a headless ``voxlab phone``; every one
    is stopped (SIGTERM, then SIGKILL) at the end of the test."""
    started: list[PhoneProcess] = []

    def make(args: list[str], env: dict[str, str] | None = None, start: bool = True) -> PhoneProcess:
        ph = PhoneProcess(args, tmp_path / f"phone{len(started)}", env or phone_env())
        started.append(ph)
        return ph.start() if start else ph

    yield make
    for ph in started:
        ph.stop()
