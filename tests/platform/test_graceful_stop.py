"""SIGTERM with calls up (issue 10): new calls get 503 with Retry-After, every session
gets Terminating with reason ``shutdown``, every call its BYE, a recording is closed and
readable, the history rows are written, and the process exits 0."""

from __future__ import annotations

import signal
import socket
import threading
import time
import wave

import pytest

from tests.platform.test_lifecycle import history_of
from tests.peers.sipua import SipUA
from voxlab.media.tones import sine
from voxlab.store.history import query_sessions

pytestmark = pytest.mark.e2e

RECORD_AND_ECHO = """
def on_alerting(e):
    call = e.call
    def connected(ev):
        call.record(name="until-shutdown")
        call.send_media_to(call)
    call.add_event_listener(CallEvents.Connected, connected)
    VoxEngine.add_event_listener(AppEvents.Terminating,
                                 lambda ev: Logger.write(f"terminating {call.id}"))
    call.answer()
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""

ECHO = """
def on_alerting(e):
    e.call.answer()
    e.call.send_media_to(e.call)
    VoxEngine.add_event_listener(AppEvents.Terminating, lambda ev: Logger.write("terminating echo"))
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
"""


def test_sigterm_ends_every_call_closes_recordings_writes_history_and_exits_0(voxlab_factory):
    srv = voxlab_factory(scenarios={"rec": RECORD_AND_ECHO, "echo": ECHO})
    with SipUA(srv.host, srv.sip_port) as ua:
        recorded = ua.call("rec", codecs=("PCMU",))
        echo = ua.call("echo", codecs=("PCMU",))
        stop = threading.Event()
        sender = recorded.rtp.send_audio_async(sine(440.0, 30.0, amplitude=0.4), stop=stop)
        time.sleep(1.5)          # a second and a half of tone in the recording
        srv.stopped_by_us = True
        srv.proc.send_signal(signal.SIGTERM)
        assert recorded.wait_bye(10), srv.describe(60)
        assert echo.wait_bye(10), srv.describe(60)
        stop.set()
        sender.join(5)
        code = srv.proc.wait(20)
    assert code == 0, srv.describe(60)
    log = srv.log_text()
    assert "terminating echo" in log and "terminating s" in log, srv.describe(60)
    (path,) = (srv.data_dir / "recordings").glob("*until-shutdown*.wav")
    with wave.open(str(path)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds > 1.0, f"{path}: {seconds:.2f} s"
    rows = query_sessions(srv.data_dir / "history.sqlite", with_calls=True)
    assert len(rows) == 2 and {r["finish_reason"] for r in rows} == {"shutdown"}, rows
    assert all(r["call_rows"] and r["call_rows"][0]["end_reason"] == "local-bye" for r in rows), rows


def test_calls_arriving_while_stopping_get_503_with_retry_after(voxlab_factory):
    from tests.peers.sipua import SipError

    # A server that takes the connection and never answers: the Terminating handler's
    # request keeps the session (and the stop) waiting until its 3 s timeout.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(5)
    slow = f"""
def on_alerting(e):
    e.call.answer()
def slow_goodbye(ev):
    Net.http_request("http://127.0.0.1:{mute.getsockname()[1]}/", lambda r: Logger.write(f"late {{r.error}}"), timeout=3)
VoxEngine.add_event_listener(AppEvents.CallAlerting, on_alerting)
VoxEngine.add_event_listener(AppEvents.Terminating, slow_goodbye)
"""
    srv = voxlab_factory(scenarios={"slow": slow})
    with SipUA(srv.host, srv.sip_port) as ua:
        ua.call("slow")
        srv.stopped_by_us = True
        srv.proc.send_signal(signal.SIGTERM)
        # The slow session holds the stop for its Terminating request (up to 3 s).
        assert srv.wait_for_log(r"Received SIGTERM", timeout=5), srv.describe(30)
        with pytest.raises(SipError) as refused:
            ua.call("slow", timeout=5)
        assert refused.value.status == 503
        assert refused.value.response.get("Retry-After")
    assert srv.proc.wait(20) == 0, srv.describe(60)
    mute.close()
    assert "late timeout after 3" in srv.log_text(), srv.describe(30)
    assert history_of(srv, None)
