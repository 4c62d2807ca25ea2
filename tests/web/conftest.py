"""Fixtures for the web console and browser softphone tests: a real voxlab with a WebRTC
gateway worker, and Debian's Chromium (/usr/bin/chromium, never a downloaded browser)
driven by Python Playwright, with a fake microphone that plays a known tone.

Screenshots of the pages land in ``tests/web/artifacts/`` (kept out of git) after each
browser test, for a look at what the page showed.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import _finish, _start
from tests.peers.server import REPO_ROOT
from voxlab.media.wav import WavWriter

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
USERS = {"alice": "wonderland", "bob": "builder", "carol": "carolpass"}

requires_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                       reason="Debian's chromium is not installed (scripts/setup.sh does)")

# call_user("alice") from a SIP caller, both legs bridged: the browser and the caller talk.
RING_ALICE = '''
def on_alerting(e):
    caller = e.call
    out = VoxEngine.call_user("alice")

    def connected(ev):
        caller.answer()
        VoxEngine.send_media_between(caller, out)

    out.add_event_listener(CallEvents.Connected, connected)
    out.add_event_listener(CallEvents.Disconnected, lambda ev: caller.hangup())
    out.add_event_listener(CallEvents.Failed, lambda ev: caller.hangup())
    caller.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
'''


# Echo, with the digits it receives written to the log (``TONE 5``).
KEYS = '''
def on_alerting(e):
    call = e.call
    call.answer()
    call.handle_tones(True)
    call.add_event_listener(CallEvents.Connected, lambda ev: call.send_media_to(call))
    call.add_event_listener(CallEvents.ToneReceived, lambda ev: Logger.write(f"TONE {ev.tone}"))
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())

VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
'''


def write_tone(path: Path, freq: float, seconds: float = 30.0, rate: int = 48000) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    with WavWriter(path, rate) as w:
        w.write((0.4 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16))
    return path


def _scenarios(tmp: Path) -> Path:
    """The bundled scenarios (echo, conf-x, ...) plus ring-alice and keys."""
    folder = tmp / "scenarios"
    shutil.copytree(REPO_ROOT / "scenarios", folder)
    (folder / "ring-alice.py").write_text(textwrap.dedent(RING_ALICE))
    (folder / "keys.py").write_text(textwrap.dedent(KEYS))
    return folder


WEB_ARGS = ("--webrtc-workers", "1", "--media-workers", "1")
# With /phone/ (the softphone alone, no console token) on: its test shares this server.
CONFIG = ("[users]\n" + "".join(f'{name} = "{pw}"\n' for name, pw in USERS.items())
          + "[webrtc]\nphone_page = true\n")


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """One voxlab with a WebRTC gateway worker and users alice, bob and carol."""
    tmp = tmp_path_factory.mktemp("voxlab-web")
    # The start-up may take longer than usual: the gateway worker imports aiortc.
    srv = _start(tmp, _scenarios(tmp), CONFIG, 40.0, extra_args=WEB_ARGS)
    yield srv
    problem = _finish(srv)
    if problem:
        pytest.fail(problem, pytrace=False)


def console_url(srv) -> str:
    return f"{srv.http_url}/console/?token={console_token(srv)}"


def console_token(srv) -> str:
    path = srv.data_dir / "console.token"
    assert srv.wait_for_log(r"web console and softphone: open", 20), srv.describe(40)
    return path.read_text().strip()


def token_cookie(srv, token: str | None = None) -> str:
    """The Cookie header the page's browser sends to ``srv`` (its own token by default)."""
    from voxlab.http.web import cookie_name
    return f"{cookie_name(srv.http_port)}={console_token(srv) if token is None else token}"


def wait_gateway(srv) -> None:
    assert srv.wait_for_log(r"\[webrtc-0\] webrtc gateway worker 0 .* up", 30), srv.describe(60)


class Browsers:
    """Chromium instances of one test, each with its own profile and fake microphone."""

    def __init__(self, playwright, tmp: Path, name: str) -> None:
        self.playwright = playwright
        self.tmp = tmp
        self.name = name
        self.contexts = []

    def open(self, url: str, tone_hz: float = 1000.0):
        n = len(self.contexts)
        tone = write_tone(self.tmp / f"mic{n}-{int(tone_hz)}.wav", tone_hz)
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self.tmp)
        ctx = self.playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, viewport={"width": 1440, "height": 1000},
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={tone}",
                  "--allow-loopback-in-peer-connection",
                  "--autoplay-policy=no-user-gesture-required"])
        self.contexts.append(ctx)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(url)
        return page

    def close(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, ctx in enumerate(self.contexts):
            for j, page in enumerate(ctx.pages):
                try:
                    page.screenshot(path=str(ARTIFACTS / f"{self.name}-{i}{j}.png"), full_page=True)
                except Exception:
                    pass
            ctx.close()


@pytest.fixture
def browsers(request, tmp_path):
    """``browsers.open(url, tone_hz=1000)`` -> a Playwright page in a new Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = Browsers(p, tmp_path, request.node.name.replace("/", "_"))
        try:
            yield b
        finally:
            b.close()


def login(page, user: str, timeout_ms: int = 15000) -> None:
    page.fill("#sp-user", user)
    page.fill("#sp-password", USERS[user])
    page.click("#sp-login")
    page.wait_for_function(
        "u => document.querySelector('#sp-status').textContent.includes('registered as ' + u)",
        arg=user, timeout=timeout_ms)


def dial(page, destination: str) -> None:
    """Call ``destination`` from the softphone and wait until the call is connected."""
    page.fill("#sp-dest", destination)
    page.click("#sp-call")
    wait_state(page, "connected")


def wait_state(page, state: str, timeout_ms: int = 15000) -> None:
    page.wait_for_function("s => document.querySelector('#sp-state').textContent.trim() === s",
                           arg=state, timeout=timeout_ms)


# The page's view of a stream, through Web Audio: the strongest frequency and the level of
# chosen frequencies, averaged over about a second of AnalyserNode snapshots.
SPECTRUM_JS = """
async ([which, freqs]) => {
  const phone = window.voxlabPhone;
  const stream = which === 'remote' ? phone.remoteStream : phone.localStream;
  if (!stream) return {error: 'no ' + which + ' stream'};
  const ctx = new AudioContext();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(stream);
  const an = ctx.createAnalyser();
  an.fftSize = 8192;
  an.smoothingTimeConstant = 0;
  source.connect(an);
  const sum = new Float64Array(an.frequencyBinCount);
  const bins = new Float32Array(an.frequencyBinCount);
  let n = 0;
  for (let i = 0; i < 12; i++) {
    await new Promise(ok => setTimeout(ok, 100));
    an.getFloatFrequencyData(bins);
    for (let k = 0; k < bins.length; k++) sum[k] += Math.pow(10, bins[k] / 10);
    n++;
  }
  const hz = k => k * ctx.sampleRate / an.fftSize;
  let best = 1;
  for (let k = 2; k < sum.length; k++) if (hz(k) > 100 && sum[k] > sum[best]) best = k;
  const db = k => 10 * Math.log10(sum[k] / n + 1e-30);
  const at = f => { const k = Math.round(f * an.fftSize / ctx.sampleRate);
                    return Math.max(db(k - 1), db(k), db(k + 1)); };
  const out = {peak_hz: hz(best), peak_db: db(best), at: {}};
  for (const f of freqs) out.at[f] = at(f);
  source.disconnect(); await ctx.close();
  return out;
}
"""


def spectrum(page, which: str = "remote", freqs=(1000,)) -> dict:
    return page.evaluate(SPECTRUM_JS, [which, list(freqs)])


def tone_heard(page, freq: float, which: str = "remote", timeout: float = 10.0) -> dict:
    """Wait until ``freq`` is the strongest frequency the page hears; the last spectrum."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        s = spectrum(page, which, [freq])
        if "error" not in s and abs(s["peak_hz"] - freq) < 30 and s["peak_db"] > -70:
            return s
        if time.monotonic() > deadline:
            return s


class ConsoleSocket:
    """The console protocol over /ws/console, as a test drives it (websocket-client)."""

    def __init__(self, srv) -> None:
        import websocket
        self.ws = websocket.create_connection(
            f"ws://{srv.host}:{srv.http_port}/ws/console", timeout=10,
            cookie=token_cookie(srv))
        self.n = 0
        self.events: list[dict] = []

    def request(self, op: str, **fields) -> dict:
        import json
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "op": op, **fields}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.n:
                assert message["ok"], message
                return message
            self.events.append(message)

    def close(self) -> None:
        self.ws.close()


def session_with_call(srv, predicate, timeout: float = 10.0) -> tuple[dict, dict]:
    """The first live session (console ``sessions``) with a call that ``predicate`` likes."""
    import time
    sock = ConsoleSocket(srv)
    try:
        deadline = time.monotonic() + timeout
        while True:
            for s in sock.request("sessions")["sessions"]:
                for c in s["calls"]:
                    if predicate(c):
                        return s, c
            assert time.monotonic() < deadline, "no such call: " + srv.describe(40)
            time.sleep(0.1)
    finally:
        sock.close()


def recorded_tone(srv, call_id: str, seconds: float = 1.5) -> float:
    """Record ``call_id`` from the console for a while; the dominant frequency of the
    recording (what the server's RTP leg received)."""
    import time
    from voxlab.media.analysis import dominant_frequency
    from voxlab.media.wav import read_wav
    sock = ConsoleSocket(srv)
    try:
        sock.request("attach", target=call_id)
        name = f"check-{call_id}"
        reply = sock.request("eval", source=f"__rec = [c for c in calls if c.id == {call_id!r}][0]"
                                            f".record(name={name!r})")
        assert not reply["error"], reply["error"]
        time.sleep(seconds)
        reply = sock.request("eval", source="__rec.stop()")
        assert not reply["error"], reply["error"]
    finally:
        sock.close()
    deadline = time.monotonic() + 5
    while True:
        files = sorted((srv.data_dir / "recordings").glob(f"*-{name}.wav"))
        if files and files[0].stat().st_size > 8000:
            pcm = read_wav(str(files[0]), 8000)
            return dominant_frequency(pcm[len(pcm) // 4:], 8000, fmin=100)
        assert time.monotonic() < deadline, f"no recording {name}: " + srv.describe(40)
        time.sleep(0.1)
