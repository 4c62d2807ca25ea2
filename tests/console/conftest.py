"""Fixtures for the console tests: a real voxlab subprocess (tests.peers.server), real
sockets, sipp and the Python SIP/RTP peer as callers.

The server's data dir lives in a short, world-traversable temp dir: Unix socket
paths are limited to 107 bytes, and the access tests need another user to reach
the socket file (to be refused by its mode and by the SO_PEERCRED check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.peers.server import REPO_ROOT, ServerError, VoxlabServer
from tests.peers.sipp import SIPP, sipp_command
from voxlab.console.client import ConsoleClient, Endpoint

VENV_BIN = Path(__import__("sys").executable).parent
VOXLAB = str(VENV_BIN / "voxlab") if (VENV_BIN / "voxlab").exists() else None

requires_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian package sip-tester) is not on PATH")

# A scenario that logs and reacts to digits: reload tests rewrite it (v1 -> v2).
RELOADME = '''
# reloadme: answers, echoes; each DTMF digit is logged by two handlers
def on_tone(e):
    Logger.write(f"tone v1 {e.tone}")


def on_alerting(e):
    call = e.call
    call.answer()
    call.handle_tones(True)
    call.send_media_to(call)
    call.add_event_listener(CallEvents.ToneReceived, on_tone)
    call.add_event_listener(CallEvents.ToneReceived, lambda ev: Logger.write(f"lambda v1 {ev.tone}"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
'''

# A scenario that logs, for `voxlab logs`, and defines its own `show` (the helper must not clobber it).
LAB = '''
def show():
    return "the scenario's own show"


def on_alerting(e):
    call = e.call
    Logger.write(f"lab: call from {call.callerid}")
    call.answer()
    call.send_media_to(call)
    call.add_event_listener(CallEvents.Connected, lambda ev: Logger.write("lab: connected"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())


VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
'''


def make_base() -> Path:
    base = Path(tempfile.mkdtemp(prefix="vxc-"))
    os.chmod(base, 0o755)
    return base


def start_server(base: Path, extra_args=(), config: str | None = None) -> VoxlabServer:
    scn = base / "scn"
    scn.mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "scenarios" / "echo.py", scn / "echo.py")
    (scn / "reloadme.py").write_text(textwrap.dedent(RELOADME))
    (scn / "lab.py").write_text(textwrap.dedent(LAB))
    cfg = None
    if config is not None:
        cfg = base / "voxlab.toml"
        cfg.write_text(textwrap.dedent(config))
    srv = VoxlabServer(data_dir=base / "data", scenarios=scn, config=cfg,
                       log_path=base / "server.log", extra_args=extra_args)
    try:
        srv.start(timeout=30)
    except ServerError as exc:
        srv.stop()
        pytest.fail(str(exc), pytrace=False)
    srv.scenarios_dir = scn
    return srv


@pytest.fixture(scope="module")
def vx():
    """One voxlab server per test module (console on its Unix socket)."""
    base = make_base()
    srv = start_server(base)
    yield srv
    died = not srv.alive()
    srv.stop()
    if died:
        pytest.fail("voxlab server died during the module\n" + srv.describe(), pytrace=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _alive_after(request):
    yield
    if "vx" in request.fixturenames:
        srv = request.getfixturevalue("vx")
        if not srv.alive():
            pytest.fail("voxlab server died during this test\n" + srv.describe(), pytrace=False)


def socket_path(srv: VoxlabServer) -> Path:
    return srv.data_dir / "console.sock"


@pytest.fixture
def console(vx):
    """A blocking console client on the module's server."""
    client = ConsoleClient.connect(Endpoint(socket_path=socket_path(vx)), timeout=20)
    yield client
    client.close()


class Sipp:
    """sipp running in the background (tests.peers.sipp's command line)."""

    def __init__(self, srv: VoxlabServer, scenario: str, workdir: Path, service: str = "echo") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.cmd = sipp_command(srv.host, srv.sip_port, scenario, service=service, workdir=workdir,
                                global_timeout_s=60)
        self.proc = subprocess.Popen(self.cmd, cwd=str(workdir), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     errors="replace", start_new_session=True)

    def wait(self, timeout: float = 60) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate(timeout=10)
            return -9
        return self.proc.returncode

    def explain(self) -> str:
        files = ""
        for name in ("errors.log", "messages.log"):
            f = self.workdir / name
            if f.exists():
                files += f"\n---- {name} ----\n" + f.read_text(errors="replace")[-4000:]
        return (f"sipp rc={self.proc.returncode}\n{' '.join(self.cmd)}\n"
                f"{getattr(self, 'out', '')[-3000:]}\n{getattr(self, 'err', '')[-2000:]}{files}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def sipp_call(vx, tmp_path):
    """Start sipp calls in the background: ``sipp_call("uac_wait_bye.xml", service="echo")``."""
    runs: list[Sipp] = []

    def start(scenario: str, service: str = "echo") -> Sipp:
        run = Sipp(vx, scenario, tmp_path / f"sipp{len(runs)}", service)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def attach_next(client: ConsoleClient, start_call, timeout: float = 30) -> dict:
    """Ask to attach to the next session, place the call (``start_call()``), return the attach reply.
    Attaching first means the feed is watched from the session's first event: no race."""
    rid = client.start("attach", next=True, wait=timeout, watch=True)
    started = start_call()
    reply = client.reply(rid, timeout=timeout + 5)
    reply["started"] = started
    return reply


def wait_feed(client: ConsoleClient, text: str, kind: str | None = None, timeout: float = 20) -> dict:
    """The first feed entry (since attaching) containing ``text`` (and of ``kind``)."""
    def match(e: dict) -> bool:
        if e.get("event") != "feed":
            return False
        entry = e["entry"]
        return text in entry.get("text", "") and (kind is None or entry.get("kind") == kind)
    try:
        return client.wait_event(match, timeout=timeout)["entry"]
    except TimeoutError:
        feed = [e["entry"] for e in client.history if e.get("event") == "feed"]
        raise AssertionError(f"no feed entry with {text!r} within {timeout} s; feed so far: {feed}") from None


def run_cli(*args: str, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    cmd = [VOXLAB] if VOXLAB else [__import__("sys").executable, "-m", "voxlab.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, **kw)
