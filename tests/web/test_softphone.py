"""The browser softphone with real WebRTC: Chromium's fake microphone plays a tone, the
gateway worker turns WebRTC into plain RTP, and what comes out is checked as audio (Web
Audio's AnalyserNode in the page, FFT of what the SIP side received or recorded)."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import numpy as np
import pytest

from tests.interop.baresip import BARESIP, Baresip
from tests.peers.process import end_process
from tests.peers.server import REPO_ROOT
from tests.peers.sipp import SIPP, sipp_command
from tests.peers.sipua import SipUA
from tests.web.conftest import (ARTIFACTS, USERS, ConsoleSocket, console_url, dial, login,
                                recorded_tone, requires_chromium, session_with_call, spectrum,
                                tone_heard, wait_gateway, wait_state)
from voxlab.media.analysis import dominant_frequency
from voxlab.media.tones import sine

pytestmark = requires_chromium


def _band_db(pcm: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Power (dB) near ``freq`` in ``pcm``, relative to the whole spectrum's median."""
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = spec[(freqs > freq - 20) & (freqs < freq + 20)].max()
    return float(10 * np.log10(band / (np.median(spec) + 1e-12)))


def _call_in_background(ua: SipUA, user: str) -> tuple[threading.Thread, dict]:
    """Call ``user`` from a thread (the answer comes from the browser meanwhile): the
    thread and a dict that gets the call, or the error."""
    placed: dict = {}

    def place() -> None:
        try:
            placed["call"] = ua.call(user, timeout=20)
        except Exception as exc:       # reported by the test, in its own thread
            placed["error"] = exc

    thread = threading.Thread(target=place)
    thread.start()
    return thread, placed


def test_echo_from_the_softphone_hears_its_own_tone(web_server, browsers):
    wait_gateway(web_server)
    page = browsers.open(console_url(web_server), tone_hz=1000)
    login(page, "alice")
    dial(page, "echo")
    heard = tone_heard(page, 1000)
    assert abs(heard["peak_hz"] - 1000) < 30, heard
    answer = page.evaluate("window.voxlabPhone.pc.remoteDescription.sdp")
    m_line = next(line for line in answer.splitlines() if line.startswith("m=audio"))
    assert set(m_line.split()[3:]) <= {"0", "8"}, m_line        # G.711 only, no Opus to encode
    # The browser leg inside voxlab is an ordinary RTP call leg: from alice, with RTP
    # counters, and what it received was the tone.
    session, call = session_with_call(
        web_server, lambda c: c["callerid"] == "alice" and c["state"] == "CONNECTED"
        and (c["rtp"] or {}).get("rx_packets", 0) > 50)
    assert session["scenario"] == "echo.py" and call["codec"] in ("PCMU", "PCMA")
    assert abs(recorded_tone(web_server, call["id"]) - 1000) < 20
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "softphone-in-call.png"))
    page.click("#sp-hangup")
    wait_state(page, "ended")
    assert not page.errors, page.errors


def test_the_phone_page_calls_without_the_console_token(web_server, browsers):
    """/phone/ ([webrtc] phone_page = true): a browser that never had the token gets the
    softphone alone; a wrong password is refused by the registrar; alice's call to echo
    hears its own tone; the console stays out of reach."""
    wait_gateway(web_server)
    page = browsers.open(f"{web_server.http_url}/phone/", tone_hz=1000)
    page.wait_for_function("document.querySelector('#sp-conn').textContent.trim() === 'connected'")
    assert page.query_selector("#console-pane") is None
    assert page.title() == "voxlab softphone"
    console = page.evaluate("fetch('/console/', {credentials: 'same-origin'}).then(r => r.status)")
    assert console == 403
    page.fill("#sp-user", "alice")
    page.fill("#sp-password", "not-her-password")
    page.click("#sp-login")
    page.wait_for_function("document.querySelector('#sp-status').classList.contains('bad')"
                           " && !document.querySelector('#sp-status').textContent.includes('registering')")
    assert "login as alice failed" in page.text_content("#sp-status"), page.text_content("#sp-status")
    login(page, "alice")
    dial(page, "echo")
    heard = tone_heard(page, 1000)
    assert abs(heard["peak_hz"] - 1000) < 30, heard
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone-page-in-call.png"))
    page.click("#sp-hangup")
    wait_state(page, "ended")
    assert not page.errors, page.errors


def test_call_user_rings_the_browser_and_both_ends_hear_each_other(web_server, browsers):
    wait_gateway(web_server)
    page = browsers.open(console_url(web_server), tone_hz=1000)
    login(page, "alice")
    with SipUA(web_server.host, web_server.sip_port) as ua:
        caller, placed = _call_in_background(ua, "ring-alice")
        wait_state(page, "incoming")
        assert "sip:" in page.text_content("#sp-incoming")
        page.click("#sp-answer")
        wait_state(page, "connected")
        caller.join(20)
        assert "call" in placed, placed.get("error")
        call = placed["call"]
        sender = call.rtp.send_audio_async(sine(600, 6.0, amplitude=0.5))
        heard = tone_heard(page, 600)
        assert abs(heard["peak_hz"] - 600) < 30, heard         # SIP -> browser
        sender.join(10)
        got = call.rtp.received_audio()
        call.bye()
    tail = got[-8000 * 2:]
    assert len(tail) == 16000 and abs(dominant_frequency(tail, 8000, fmin=100) - 1000) < 20  # browser -> SIP
    wait_state(page, "ended")


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian package sip-tester) is not on PATH")
def test_a_sipp_call_rings_alices_browser_and_the_audio_goes_round(web_server, browsers, tmp_path):
    """sipp starts the session (ring-alice: call_user("alice"), then the two legs bridged)
    and echoes every RTP packet it gets. The browser's 1 kHz reaches sipp and comes back:
    voxlab's SIP leg received it from sipp (a recording of that leg) and the page hears it
    (its AnalyserNode)."""
    wait_gateway(web_server)
    page = browsers.open(console_url(web_server), tone_hz=1000)
    login(page, "alice")
    cmd = sipp_command(web_server.host, web_server.sip_port,
                       str(REPO_ROOT / "docs" / "sipp" / "wait-bye.xml"), service="ring-alice",
                       workdir=tmp_path, global_timeout_s=60, recv_timeout_ms=60000,
                       extra=["-rtp_echo"])
    sipp = subprocess.Popen(cmd, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_state(page, "incoming")
        page.click("#sp-answer")
        wait_state(page, "connected")
        _, sip_leg = session_with_call(web_server, lambda c: c["callerid"] == "sipp"
                                       and c["state"] == "CONNECTED", timeout=15)
        assert abs(recorded_tone(web_server, sip_leg["id"]) - 1000) < 20   # browser -> sipp -> voxlab
        heard = tone_heard(page, 1000)
        assert abs(heard["peak_hz"] - 1000) < 30, heard                     # ... -> browser
        page.click("#sp-hangup")
        wait_state(page, "ended")
        out, err = sipp.communicate(timeout=30)      # the scenario hangs up the SIP leg too
        assert sipp.returncode == 0, f"sipp did not get a clean BYE: {out[-2000:]} {err[-2000:]}"
    finally:
        end_process(sipp)


def test_two_browsers_and_a_sip_caller_in_one_conference(web_server, browsers):
    wait_gateway(web_server)
    url = console_url(web_server)
    bob = browsers.open(url, tone_hz=1000)
    carol = browsers.open(url, tone_hz=1500)
    for page, user in ((bob, "bob"), (carol, "carol")):
        login(page, user)
        dial(page, "conf-x")
    with SipUA(web_server.host, web_server.sip_port) as ua:
        call = ua.call("conf-x")
        sender = call.rtp.send_audio_async(sine(600, 5.0, amplitude=0.5))
        time.sleep(1.5)
        at_bob = spectrum(bob, "remote", [600, 1000, 1500, 3300])
        at_carol = spectrum(carol, "remote", [600, 1000, 1500, 3300])
        sender.join(10)
        got = call.rtp.received_audio()
        call.bye()
    floor_b, floor_c = at_bob["at"]["3300"], at_carol["at"]["3300"]
    # Each one hears the two others (and not itself: a conference mixes N-1).
    assert at_bob["at"]["600"] - floor_b > 20 and at_bob["at"]["1500"] - floor_b > 20, at_bob
    assert at_carol["at"]["600"] - floor_c > 20 and at_carol["at"]["1000"] - floor_c > 20, at_carol
    assert at_bob["at"]["1500"] - at_bob["at"]["1000"] > 10, at_bob
    assert at_carol["at"]["1000"] - at_carol["at"]["1500"] > 10, at_carol
    tail = got[-8000:]
    assert _band_db(tail, 1000) > 20 and _band_db(tail, 1500) > 20, "SIP caller hears both browsers"
    for page in (bob, carol):
        page.click("#sp-hangup")
        wait_state(page, "ended")


def test_dial_pad_dtmf_mute_and_hold_reach_the_server(web_server, browsers):
    wait_gateway(web_server)
    page = browsers.open(console_url(web_server), tone_hz=1000)
    login(page, "alice")
    page.fill("#sp-dest", "keys")
    page.press("#sp-dest", "Enter")                # the keyboard alone places the call
    wait_state(page, "connected")
    assert abs(tone_heard(page, 1000)["peak_hz"] - 1000) < 30
    before = web_server.log_text().count("] TONE ")
    page.click("button[data-digit='5']")
    page.click("button[data-digit='#']")
    deadline = time.monotonic() + 10
    while web_server.log_text().count("] TONE ") < before + 2:
        assert time.monotonic() < deadline, web_server.describe(40)
        time.sleep(0.1)
    assert re.findall(r"\] TONE (\S+)", web_server.log_text())[-2:] == ["5", "#"]
    # Muted, the echo has nothing to give back: the tone goes away, and comes back.
    page.click("#sp-mute")
    deadline = time.monotonic() + 10
    while spectrum(page, "remote", [1000])["at"]["1000"] > -90:
        assert time.monotonic() < deadline, "the tone is still heard while muted"
    page.click("#sp-mute")
    assert abs(tone_heard(page, 1000)["peak_hz"] - 1000) < 30
    # Hold is a re-INVITE: the server's call knows it is held.
    page.click("#sp-hold")
    wait_state(page, "held")
    _, call = session_with_call(web_server, lambda c: c["callerid"] == "alice"
                                and c["state"] == "CONNECTED")
    sock = ConsoleSocket(web_server)
    try:
        sock.request("attach", target=call["id"])
        assert sock.request("eval", source="call.on_hold")["result"] == "True"
        page.click("#sp-hold")
        wait_state(page, "connected")
        assert sock.request("eval", source="call.on_hold")["result"] == "False"
    finally:
        sock.close()
    page.click("#sp-hangup")
    wait_state(page, "ended")


@pytest.mark.skipif(BARESIP is None, reason="baresip (Debian baresip-core) is not on PATH")
def test_call_user_rings_the_browser_tab_and_the_sip_phone_together(web_server, browsers, tmp_path):
    """alice has a SIP phone (baresip, registered, answering by hand) and a browser tab:
    call_user rings both; the tab answers, the phone is cancelled."""
    wait_gateway(web_server)
    account = (f"<sip:alice@{web_server.host}:{web_server.sip_port}>;auth_pass={USERS['alice']};"
               "regint=600;answermode=manual;audio_codecs=PCMU")
    phone = Baresip(tmp_path / "baresip", source=REPO_ROOT / "scenarios" / "hello.wav",
                    account=account, avoid=[web_server.rtp_range])
    try:
        phone.start()
        assert phone.wait_for(r"200 OK|registered successfully", timeout=15), phone.output()
        page = browsers.open(console_url(web_server), tone_hz=1000)
        login(page, "alice")
        with SipUA(web_server.host, web_server.sip_port) as ua:
            caller, placed = _call_in_background(ua, "ring-alice")
            wait_state(page, "incoming")
            assert phone.wait_for(r"^INVITE sip:alice", timeout=10), phone.output()   # both ring
            page.click("#sp-answer")
            wait_state(page, "connected")
            caller.join(20)
            assert "call" in placed, placed.get("error")
            call = placed["call"]
            assert phone.wait_for(r"^CANCEL sip:", timeout=10), phone.output()  # the tab won
            sender = call.rtp.send_audio_async(sine(600, 4.0, amplitude=0.5))
            assert abs(tone_heard(page, 600)["peak_hz"] - 600) < 30
            sender.join(10)
            call.bye()
        wait_state(page, "ended")
    finally:
        phone.stop()
