"""Conferences heard by real callers: each caller sends its own frequency and must hear
every other participant and not itself (N-1); a RECEIVE listener hears all and is heard
by none; a participant that joins and leaves is heard only meanwhile. Callers are in
sessions of their own and meet in the room's session through call_conference, as the
bundled conf-<room> scenario does (tested here too)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.peers.sipua import SipUA
from voxlab.media.tones import sine
from voxlab.media.wav import read_wav

pytestmark = pytest.mark.e2e

SCENARIOS = {
    "join": """
def on_alerting(e):
    call = e.call
    role = e.headers.get("X-Role", "both")
    def connected(_):
        into = VoxEngine.call_conference("room-a", headers={"X-Role": role})
        VoxEngine.send_media_between(call, into)
        into.add_event_listener(CallEvents.Disconnected, lambda ev: call.hangup())
    call.add_event_listener(CallEvents.Connected, connected)
    call.add_event_listener(CallEvents.Disconnected, lambda ev: VoxEngine.terminate())
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
    "room-a": """
conf = VoxEngine.create_conference("a")
conf.send_media_to(VoxEngine.create_recorder("room-a-mix"))     # a recording of the room
def on_alerting(e):
    call = e.call
    direction = "RECEIVE" if e.headers.get("X-Role") == "listen" else "BOTH"
    def connected(_):
        ep = conf.add(call=call, direction=direction)
        Logger.write(f"joined {ep.id} {ep.get_direction()} ({len(conf.get_list())} in the room)")
    call.add_event_listener(CallEvents.Connected, connected)
    call.answer()
conf.add_event_listener(ConferenceEvents.EndpointRemoved, lambda e: Logger.write(f"left {e.endpoint.id}"))
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
""",
}

FREQS = {"a": 500.0, "b": 800.0, "c": 1300.0, "listener": 2000.0, "late": 1700.0}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.conftest import _finish, _start

    server = _start(tmp_path_factory.mktemp("conf"), SCENARIOS)
    yield server
    problem = _finish(server)
    assert problem is None, problem


def spectrum_db(pcm: np.ndarray, freqs) -> dict[float, float]:
    """Level of each frequency in the last 0.5 s, in dB relative to the strongest."""
    x = pcm[-4000:].astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak = spec.max() + 1e-9
    out = {}
    for f in freqs:
        k = int(round(f * len(x) / 8000))
        out[f] = 20 * np.log10(spec[max(0, k - 2):k + 3].max() / peak + 1e-12)
    return out


def hears(rtp, present, absent, timeout: float = 10.0) -> dict:
    """Wait until every frequency of ``present`` is within 15 dB of the strongest and every
    one of ``absent`` is more than 30 dB below it."""
    deadline = time.monotonic() + timeout
    levels: dict = {}
    while time.monotonic() < deadline:
        audio = rtp.received_audio()
        if len(audio) >= 4000:
            levels = spectrum_db(audio, list(present) + list(absent))
            if all(levels[f] > -15 for f in present) and all(levels[f] < -30 for f in absent):
                return levels
        time.sleep(0.2)
    raise AssertionError(f"expected {present} and not {absent}, got {levels}")


def show_room(srv) -> str:
    """``show()`` in the room's session, through the console as a user would."""
    import json
    import subprocess
    import sys

    cli = [sys.executable, "-m", "voxlab.cli"]
    out = subprocess.run(cli + ["sessions", "--json", "--data-dir", str(srv.data_dir)],
                         capture_output=True, text=True, timeout=30)
    room = [s["id"] for s in json.loads(out.stdout)["sessions"] if s["scenario"] == "room-a.py"][-1]
    out = subprocess.run(cli + ["attach", room, "--data-dir", str(srv.data_dir)], input="show()\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


class Party:
    def __init__(self, srv, name: str, role: str = "both", target: str = "join") -> None:
        self.ua = SipUA(srv.host, srv.sip_port)
        self.call = self.ua.call(target, headers={"X-Role": role})
        self.stop = threading.Event()
        self.sender = self.call.rtp.send_audio_async(sine(FREQS[name], 30.0, amplitude=0.15),
                                                     stop=self.stop)

    def leave(self) -> None:
        self.stop.set()
        self.sender.join(5)
        self.call.bye()
        self.ua.close()


def test_three_callers_hear_each_other_not_themselves_and_a_listener_hears_all(srv):
    parties = {n: Party(srv, n) for n in ("a", "b", "c")}
    listener = Party(srv, "listener", role="listen")
    try:
        everyone = ("a", "b", "c")
        for name in everyone:
            others = [FREQS[o] for o in everyone if o != name]
            hears(parties[name].call.rtp, others, [FREQS[name], FREQS["listener"]])
        hears(listener.call.rtp, [FREQS[n] for n in everyone], [FREQS["listener"]])
        shown = show_room(srv)
        assert "conference" in shown and "5 endpoint(s)" in shown, shown
        routes = [line.split() for line in shown.split("media routes:")[1].splitlines() if " -> " in line]
        into = [r for r in routes if r[2] == "a"]
        out_of = [r for r in routes if r[0] == "a"]
        assert len(into) == 3 and len(out_of) == 5, shown     # 3 speakers in; 4 listeners + recorder out
        assert "level in=" in shown, shown
        # The recorder of the room hears everyone who speaks (its file is valid while it grows).
        deadline = time.monotonic() + 10
        while True:
            mix = read_wav(next((srv.data_dir / "recordings").glob("*room-a-mix.wav")), 8000)
            levels = spectrum_db(mix, [FREQS[n] for n in everyone])
            if all(v > -15 for v in levels.values()):
                break
            assert time.monotonic() < deadline, levels
            time.sleep(0.2)
        # A fourth joins: heard by the others; then leaves: no longer heard.
        late = Party(srv, "late")
        hears(parties["a"].call.rtp, [FREQS["b"], FREQS["c"], FREQS["late"]], [FREQS["a"]])
        hears(late.call.rtp, [FREQS[n] for n in everyone], [FREQS["late"]])
        late.leave()
        assert srv.wait_for_log(r"left a-e\d+", timeout=10), srv.describe(40)
        hears(parties["a"].call.rtp, [FREQS["b"], FREQS["c"]], [FREQS["a"], FREQS["late"]])
    finally:
        for p in list(parties.values()) + [listener]:
            p.leave()


def test_bundled_conf_room_joins_two_callers(server):
    a = Party(server, "a", target="conf-lobby")
    b = Party(server, "b", target="conf-lobby")
    try:
        hears(a.call.rtp, [FREQS["b"]], [FREQS["a"]], timeout=20)
        hears(b.call.rtp, [FREQS["a"]], [FREQS["b"]], timeout=20)
    finally:
        a.leave()
        b.leave()
