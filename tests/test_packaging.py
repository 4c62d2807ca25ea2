"""The built distribution, installed away from the checkout, is a working voxlab.

The editable install the test suite runs from puts the checkout on sys.path,
which hides packaging mistakes (a twistd plugin or bundled scenario left out
of the wheel).  So: build the wheel from the working tree, install it into a
fresh virtualenv that sees only the third-party packages, and use it from a
directory that is not the checkout.

The other two ways of installing from a checkout get the same check that twistd
finds the plugin: ``pip install .`` and the developer's ``pip install -e .``
(setuptools' default editable mode, which must stay free of deprecation
warnings and serve edits from the checkout).
"""

from __future__ import annotations

import os
import re
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


def _copy_source(dest: Path) -> Path:
    """A copy of the working tree (what git tracks or would track) at ``dest``."""
    for name in _source_files():
        if (REPO_ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, dest / name)
    return dest


def _fresh_venv(venv: Path) -> Path:
    """A virtualenv without pip whose third-party packages come from the test
    venv's site-packages (a plain path entry, so the editable install's .pth
    pointing at the checkout is not processed)."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _pip_install(venv: Path, *args: str) -> str:
    """The test venv's pip installs into ``venv``: nothing from an index, no
    dependencies (they come through third_party.pth), and a build from source
    uses the setuptools those provide."""
    return _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                 "-q", "--no-deps", "--no-index", "--no-build-isolation", *args], cwd=venv.parent)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv with the voxlab wheel installed."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = _copy_source(tmp / "src")
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", str(wheels), str(src)], cwd=tmp)
    venv = _fresh_venv(tmp / "venv")
    _pip_install(venv, str(next(wheels.glob("voxlab-*.whl"))))
    return venv


@pytest.fixture(scope="module")
def installed_from_tree(tmp_path_factory) -> Path:
    """A virtualenv after ``pip install <copy of the tree>``."""
    tmp = tmp_path_factory.mktemp("install-tree")
    src = _copy_source(tmp / "src")
    venv = _fresh_venv(tmp / "venv")
    _pip_install(venv, str(src))
    return venv


@pytest.fixture(scope="module")
def installed_editable(tmp_path_factory) -> tuple[Path, Path, str]:
    """A virtualenv after ``pip install -e <copy of the tree>`` in setuptools'
    default editable mode: the venv, the copy it serves, and pip's output."""
    tmp = tmp_path_factory.mktemp("install-editable")
    src = _copy_source(tmp / "src")
    venv = _fresh_venv(tmp / "venv")
    return venv, src, _pip_install(venv, "-e", str(src))


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


def _python(venv: Path, code: str, cwd: Path) -> str:
    return _run([str(venv / "bin" / "python"), "-c", code], cwd, _env(venv)).strip()


def _twistd_help(venv: Path, cwd: Path) -> str:
    """``twistd --help`` (its list of plugins), run by twistd's own entry point
    as the 'twistd' script runs it."""
    return _run([str(venv / "bin" / "python"), "-c", "import sys; sys.argv[0] = 'twistd'; "
                 "from twisted.scripts.twistd import run; run()", "--help"], cwd, _env(venv))


_WHERE = ("import voxlab, twisted.plugins.voxlab_plugin as p; "
          "print(voxlab.__file__); print(p.__file__)")


def test_installed_twistd_lists_voxlab_and_cli_has_version(installed, tmp_path):
    where = _python(installed, "import voxlab; print(voxlab.__file__)", tmp_path)
    assert str(REPO_ROOT) not in where, "the installed voxlab must not come from the checkout"
    listing = _twistd_help(installed, tmp_path)
    assert "voxlab" in listing and "telephony" in listing, listing
    version = _run([str(installed / "bin" / "voxlab"), "--version"], tmp_path, _env(installed))
    assert version.strip() == f"voxlab {__version__}"


def test_pip_install_of_the_tree_gives_twistd_the_plugin(installed_from_tree, tmp_path):
    venv = installed_from_tree
    package, plugin = _python(venv, _WHERE, tmp_path).splitlines()
    for path in (package, plugin):
        assert Path(path).is_relative_to(venv), f"{path} is not installed in {venv}"
    assert Path(plugin).parent.name == "plugins" and Path(plugin).parent.parent.name == "twisted"
    listing = _twistd_help(venv, tmp_path)
    assert "voxlab" in listing and "telephony" in listing, listing
    version = _run([str(venv / "bin" / "voxlab"), "--version"], tmp_path, _env(venv))
    assert version.strip() == f"voxlab {__version__}"


def test_editable_install_is_free_of_setuptools_warnings(installed_editable):
    _venv, _src, pip_output = installed_editable
    # setuptools frames its warnings (the 'compat' mode's deprecation among them)
    # in '!!' lines; pip passes them on even with -q.
    assert "!!" not in pip_output and "deprecat" not in pip_output.lower(), pip_output


def test_editable_install_serves_the_plugin_and_edits_from_the_checkout(installed_editable,
                                                                         tmp_path):
    venv, src, _ = installed_editable
    package, plugin = _python(venv, _WHERE, tmp_path).splitlines()
    assert Path(package) == src / "voxlab" / "__init__.py"
    assert Path(plugin) == src / "twisted" / "plugins" / "voxlab_plugin.py"
    listing = _twistd_help(venv, tmp_path)
    assert "voxlab" in listing and "telephony" in listing, listing
    version = _run([str(venv / "bin" / "voxlab"), "--version"], tmp_path, _env(venv))
    assert version.strip() == f"voxlab {__version__}"

    # An edit to the plugin reaches twistd (through its dropin.cache), and a new
    # module in the package is importable, without reinstalling.
    plugin_file = src / "twisted" / "plugins" / "voxlab_plugin.py"
    text, edits = re.subn(r'^(\s*description\s*=\s*)".*"$', r'\1"edited in the checkout copy"',
                          plugin_file.read_text(), count=1, flags=re.M)
    assert edits == 1, "the plugin has no one-line description to edit"
    plugin_file.write_text(text)
    later = time.time() + 5    # newer than the dropin.cache the first listing wrote
    os.utime(plugin_file, (later, later))
    listing = _twistd_help(venv, tmp_path)
    assert "edited in the checkout copy" in listing, listing
    (src / "voxlab" / "_editable_probe.py").write_text("SEEN = 'from the checkout copy'\n")
    assert _python(venv, "from voxlab._editable_probe import SEEN; print(SEEN)",
                   tmp_path) == "from the checkout copy"


def test_installed_server_routes_the_bundled_scenarios(installed, tmp_path):
    rtp = rtp_block(20)
    port = free_sip_port(avoid=range(rtp[0], rtp[1] + 2))
    cmd = server_command(str(installed / "bin" / "python"), f"127.0.0.1:{port}", rtp,
                         tmp_path / "data", extra_args=("--http", f"127.0.0.1:{free_sip_port()}"))
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
