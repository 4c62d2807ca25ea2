"""The built distribution, installed away from the checkout, is a working voxlab.

The editable install the test suite runs from puts the checkout on sys.path,
which hides packaging mistakes (a twistd plugin or bundled scenario left out
of the wheel).  So: build the wheel from the working tree, install it into a
fresh virtualenv that sees only the third-party packages, and use it from a
directory that is not the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from tests.peers.server import REPO_ROOT, free_sip_port, rtp_block, server_command, sip_options_ping
from voxlab import __version__


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 180) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


_NOT_SOURCE = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", "data"}


def _source_files() -> list[str]:
    """What git tracks or would track (no .venv, no build leftovers); without git
    (a tarball of the tree), everything but those leftovers."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return [str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.rglob("*")
                if p.is_file() and not _NOT_SOURCE & set(p.relative_to(REPO_ROOT).parts)
                and not any(part.endswith(".egg-info") for part in p.parts)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv with the voxlab wheel installed; its third-party packages
    come from the test venv's site-packages (a plain path entry, so the
    editable install's .pth pointing at the checkout is not processed)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    files = _source_files()
    for name in files:
        if (REPO_ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, src / name)
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", str(wheels), str(src)], cwd=tmp)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("voxlab-*.whl"))
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
          "--no-deps", "--no-index", str(wheel)], cwd=tmp)
    return venv


def test_wheel_carries_the_plugin_and_the_bundled_scenarios(installed):
    wheel_dir = installed.parent / "wheels"
    names = zipfile.ZipFile(next(wheel_dir.glob("voxlab-*.whl"))).namelist()
    assert "twisted/plugins/voxlab_plugin.py" in names
    for scenario in ("echo.py", "hello.py", "hello.wav", "menu.py"):
        assert any(n.endswith(f"data/share/voxlab/scenarios/{scenario}") for n in names), scenario


def _env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_installed_twistd_lists_voxlab_and_cli_has_version(installed, tmp_path):
    python = str(installed / "bin" / "python")
    where = _run([python, "-c", "import voxlab; print(voxlab.__file__)"], tmp_path, _env(installed))
    assert str(REPO_ROOT) not in where, "the installed voxlab must not come from the checkout"
    # twistd's own entry point, as the 'twistd' script runs it
    listing = _run([python, "-c", "import sys; sys.argv[0] = 'twistd'; "
                    "from twisted.scripts.twistd import run; run()", "--help"],
                   tmp_path, _env(installed))
    assert "voxlab" in listing and "telephony" in listing, listing
    version = _run([str(installed / "bin" / "voxlab"), "--version"], tmp_path, _env(installed))
    assert version.strip() == f"voxlab {__version__}"


def test_installed_server_routes_the_bundled_scenarios(installed, tmp_path):
    rtp = rtp_block(20)
    port = free_sip_port(avoid=range(rtp[0], rtp[1] + 2))
    cmd = server_command(str(installed / "bin" / "python"), f"127.0.0.1:{port}", rtp,
                         tmp_path / "data")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(installed), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while sip_options_ping("127.0.0.1", port, timeout=0.3) != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
        text = log.read_text()
        assert f"scenarios {installed / 'share' / 'voxlab' / 'scenarios'}" in text, text
        for name in ("echo", "hello", "menu"):
            assert f"route {name} -> {name}.py" in text, text
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
