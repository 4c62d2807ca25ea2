"""Self-tests of the test peers against sipp itself (no voxlab involved).

When a voxlab e2e test fails, these tell whether the peer or the scenario
file is to blame: the Python UAC and the sipp UAC scenarios must work
against sipp's own UAS (``-sn uas -rtp_echo``) and the selftest_uas_*.xml
scenarios.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import requires_sipp
from tests.peers.sipp import SIPP, run_sipp, SCENARIO_DIR, sipp_ports
from tests.peers.sipua import SipUA
from voxlab.media.analysis import dominant_frequency, rms_dbfs
from voxlab.media.tones import sine

pytestmark = requires_sipp


class SippUas:
    def __init__(self, workdir, scenario="uas", transport="u1", calls=None, echo=True, keys=None):
        self.port, self.media_port, _ = sipp_ports()
        cmd = [SIPP]
        cmd += ["-sn", "uas"] if scenario == "uas" else ["-sf", str(SCENARIO_DIR / scenario)]
        cmd += ["-i", "127.0.0.1", "-p", str(self.port), "-mp", str(self.media_port),
                "-t", transport, "-nostdin", "-trace_err",
                "-error_file", str(workdir / f"uas_{self.port}_errors.log")]
        if echo:
            cmd += ["-rtp_echo"]
        for name, value in (keys or {}).items():
            cmd += ["-key", name, value]
        if calls:
            cmd += ["-m", str(calls)]
        self.proc = subprocess.Popen(cmd, cwd=str(workdir), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        time.sleep(0.3)           # sipp has no readiness signal; it binds at once
        assert self.proc.poll() is None, self.proc.stderr.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def sipp_uas(tmp_path):
    started = []

    def make(**kw):
        uas = SippUas(tmp_path, **kw)
        started.append(uas)
        return uas

    yield make
    for uas in started:
        uas.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_peer_echo_through_sipp(sipp_uas, transport):
    uas = sipp_uas(transport={"udp": "u1", "tcp": "t1"}[transport])
    tone = sine(1000.0, 1.0, amplitude=0.5)
    with SipUA("127.0.0.1", uas.port, transport) as ua:
        call = ua.call("echo", codecs=("PCMU",))
        call.rtp.send_audio(tone)
        call.rtp.wait_quiet(0.3)
        heard = call.rtp.received_audio()
        assert call.bye().status == 200
    assert len(heard) == len(tone)
    assert abs(dominant_frequency(heard) - 1000) < 2
    assert abs(rms_dbfs(heard) - rms_dbfs(tone)) < 0.3


def test_peer_dtmf_through_sipp(sipp_uas):
    uas = sipp_uas()
    with SipUA("127.0.0.1", uas.port) as ua:
        call = ua.call("echo")
        call.rtp.dtmf_pt = 101       # sipp's answer lists only PCMU; it echoes anything
        call.rtp.send_dtmf("12#")
        call.rtp.wait_quiet(0.3)
        assert call.rtp.received_digits() == "12#"
        call.bye()


def test_peer_sees_200_retransmissions_from_sipp(sipp_uas):
    uas = sipp_uas()
    with SipUA("127.0.0.1", uas.port) as ua:
        call = ua.call("echo", ack=False)
        deadline = time.perf_counter() + 3
        while len(call.ok_times) < 3 and time.perf_counter() < deadline:
            time.sleep(0.02)
        assert len(call.ok_times) >= 3
        call.send_ack()
        assert call.bye().status == 200


def test_peer_cancel_against_sipp(sipp_uas):
    uas = sipp_uas(scenario="selftest_uas_cancel.xml", calls=1)
    with SipUA("127.0.0.1", uas.port) as ua:
        call = ua.start_call("ring")
        final = call.cancel()
        assert call.cancel_response.status == 200
        assert final.status == 487


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_peer_receives_bye_from_sipp(sipp_uas, transport):
    uas = sipp_uas(scenario="selftest_uas_bye.xml", calls=1,
                   transport={"udp": "u1", "tcp": "t1"}[transport])
    with SipUA("127.0.0.1", uas.port, transport) as ua:
        call = ua.call("hello")
        assert call.wait_bye(5)
        assert call.bye_request.tag("To") == call.local_tag
        time.sleep(0.2)      # let our 200 reach sipp before it is stopped


@pytest.mark.parametrize("scenario,uas_kw,extra", [
    ("uac_call.xml", {}, []),
    ("uac_dtmf.xml", {}, []),
    ("uac_retrans.xml", {}, ["-nr"]),
    ("uac_cancel.xml", {"scenario": "selftest_uas_cancel.xml", "calls": 1}, []),
    ("uac_wait_bye.xml", {"scenario": "selftest_uas_bye.xml", "calls": 1}, []),
])
def test_sipp_scenarios_against_sipp(sipp_uas, tmp_path, scenario, uas_kw, extra):
    uas = sipp_uas(**uas_kw)
    res = run_sipp("127.0.0.1", uas.port, scenario, workdir=tmp_path / "uac",
                   service="echo", duration_ms=300, extra=extra)
    assert res.ok, res.explain()

