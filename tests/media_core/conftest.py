"""Helpers shared by the media core tests (external tools, pcap reading)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

requires_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
requires_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                     reason="espeak-ng not installed")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=True, capture_output=True, text=True)
