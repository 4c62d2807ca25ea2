"""Shared fixtures: the voxlab server as a real subprocess, and real peers.

``server``          module-scoped voxlab with the bundled scenarios.
``voxlab_factory``  start servers with their own scenarios dir / config:

    def test_x(voxlab_factory):
        srv = voxlab_factory(scenarios={"ring": "def on_alerting(e): pass\\n..."})

Every server gets free ports (SIP UDP+TCP, a random block of 200 even RTP
ports), a fresh data dir, waits for OPTIONS -> 200, and is stopped with
SIGTERM (then SIGKILL).  A server that died on its own fails the test that
was using it, with its log.
"""

from __future__ import annotations

import shutil
import signal
import textwrap
from pathlib import Path

import pytest

from tests.peers.server import ServerError, VoxlabServer

requires_sipp = pytest.mark.skipif(shutil.which("sipp") is None,
                                   reason="sipp (Debian package sip-tester) is not on PATH")


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test against a real voxlab process")
    config.addinivalue_line("markers", "load: a load test (hundreds of calls; judged only when the generator kept pace)")


def _start(tmp: Path, scenarios=None, config=None, timeout: float = 30.0,
           tones: dict[str, tuple[float, float]] | None = None, **kw) -> VoxlabServer:
    """Start one server under ``tmp``.  ``scenarios`` is a directory, or a
    {name: source} dict written to ``tmp/scenarios`` as NAME.py; ``config``
    is a path or TOML text; ``tones`` {name: (Hz, seconds)} are written beside
    the scenarios as NAME.wav (8 kHz sines at half scale) for playback tests."""
    tmp.mkdir(parents=True, exist_ok=True)
    scn_dir = None
    if isinstance(scenarios, dict):
        scn_dir = tmp / "scenarios"
        scn_dir.mkdir(exist_ok=True)
        for name, src in scenarios.items():
            (scn_dir / f"{name}.py").write_text(textwrap.dedent(src))
    elif scenarios is not None:
        scn_dir = Path(scenarios)
    if tones:
        from voxlab.media.tones import sine
        from voxlab.media.wav import WavWriter

        for name, (freq, seconds) in tones.items():
            with WavWriter(scn_dir / f"{name}.wav", 8000) as w:
                w.write(sine(freq, seconds, amplitude=0.5))
    cfg = None
    if config is not None:
        if isinstance(config, Path) or (isinstance(config, str) and "\n" not in config
                                        and config.endswith(".toml") and Path(config).exists()):
            cfg = Path(config)
        else:
            cfg = tmp / "voxlab.toml"
            cfg.write_text(textwrap.dedent(config))
    srv = VoxlabServer(data_dir=tmp / "data", scenarios=scn_dir, config=cfg,
                       log_path=tmp / "server.log", **kw)
    try:
        srv.start(timeout=timeout)
    except ServerError as exc:
        srv.stop()
        pytest.fail(str(exc), pytrace=False)
    return srv


def _finish(srv: VoxlabServer) -> str | None:
    """Stop a server; a failure message if it had died on its own."""
    died = not srv.alive() and not srv.stopped_by_us
    srv.stop()
    if died:
        return "voxlab server died unexpectedly\n" + srv.describe()
    return None


@pytest.fixture
def voxlab_factory(tmp_path):
    """Factory: ``voxlab_factory(scenarios=None|dir|{name: src}, config=None, **kw)``."""
    servers: list[VoxlabServer] = []

    def make(scenarios=None, config=None, timeout: float = 30.0, **kw) -> VoxlabServer:
        srv = _start(tmp_path / f"voxlab{len(servers)}", scenarios, config, timeout, **kw)
        servers.append(srv)
        return srv

    yield make
    problems = [p for p in (_finish(s) for s in servers) if p]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One voxlab with the bundled scenarios, shared by a test module."""
    srv = _start(tmp_path_factory.mktemp("voxlab"))
    yield srv
    problem = _finish(srv)
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(autouse=True)
def _keep_the_reactors_signal_wakeup():
    """Twisted learns that a child process ended through ``signal.set_wakeup_fd``; an
    asyncio loop run in this process (the console's prompt_toolkit tests) takes that fd and
    leaves -1 behind, and from then on no spawned process (espeak-ng) ever reports its end.
    Put Twisted's back after every test."""
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    yield
    if before != -1:
        signal.set_wakeup_fd(before)


@pytest.fixture(autouse=True)
def _server_still_alive(request):
    """A test using the module-scoped ``server`` fails if the server died
    during it (and is skipped-with-error if it was already dead)."""
    if "server" not in request.fixturenames:
        yield
        return
    srv = request.getfixturevalue("server")
    if not isinstance(srv, VoxlabServer):      # a directory's own ``server`` fixture
        yield
        return
    if not srv.alive():
        pytest.fail("voxlab server was already dead before this test\n" + srv.describe(),
                    pytrace=False)
    yield
    if not srv.alive():
        pytest.fail("voxlab server died during this test\n" + srv.describe(), pytrace=False)


@pytest.fixture
def sipp_workdir(tmp_path):
    d = tmp_path / "sipp"
    d.mkdir()
    return d
