"""The same page in Debian's Firefox ESR (driven over WebDriver BiDi): the console
connects, and the softphone makes a real WebRTC call to echo. Firefox's fake microphone
plays 1 kHz: the server's leg records 1 kHz, and Firefox receives the echo (its RTP
statistics: Web Audio does not run in headless Firefox without a sound device)."""

from __future__ import annotations

import pytest

from tests.peers.firefox import FIREFOX, Firefox
from tests.web.conftest import (USERS, console_url, recorded_tone, session_with_call,
                                wait_gateway)

pytestmark = pytest.mark.skipif(FIREFOX is None, reason="firefox-esr is not installed (scripts/setup.sh does)")

STATE = "document.querySelector('#sp-state').textContent.trim()"


def _type(ff: Firefox, selector: str, text: str) -> None:
    ff.evaluate(f"(() => {{ const e = document.querySelector({selector!r}); e.value = {text!r};"
                " e.dispatchEvent(new Event('input', {bubbles: true})); return true; })()")


def _click(ff: Firefox, selector: str) -> None:
    ff.evaluate(f"(() => {{ document.querySelector({selector!r}).click(); return true; }})()")


INBOUND = """window.voxlabPhone.pc.getStats().then(stats => {
  let out = null;
  stats.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio') out = r; });
  return out && {packets: out.packetsReceived, level: out.audioLevel || 0};
})"""


def test_console_and_a_webrtc_echo_call_in_firefox(web_server, tmp_path):
    wait_gateway(web_server)
    ff = Firefox(tmp_path)
    try:
        ff.goto(console_url(web_server))
        ff.wait_for("(() => { const t = document.querySelector('#conn-status').textContent;"
                    " return t.includes('connected') && !t.includes('disconnected'); })()")
        _type(ff, "#sp-user", "alice")
        _type(ff, "#sp-password", USERS["alice"])
        _click(ff, "#sp-login")
        ff.wait_for("document.querySelector('#sp-status').textContent.includes('registered as alice')")
        _type(ff, "#sp-dest", "echo")
        _click(ff, "#sp-call")
        ff.wait_for(f"{STATE} === 'connected'")
        answer = ff.evaluate("window.voxlabPhone.pc.remoteDescription.sdp")
        m_line = next(line for line in answer.splitlines() if line.startswith("m=audio"))
        assert m_line.split()[3:] in (["0", "8"], ["0"], ["8", "0"], ["8"]), m_line   # G.711 only
        _, call = session_with_call(web_server, lambda c: c["callerid"] == "alice"
                                    and c["state"] == "CONNECTED")
        assert abs(recorded_tone(web_server, call["id"]) - 1000) < 20
        heard = ff.wait_for(f"{INBOUND}.then(s => s && s.packets > 100 && s.level > 0.01 && s)")
        assert heard["packets"] > 100, heard
        _click(ff, "#sp-hangup")
        ff.wait_for(f"['ended', 'idle'].includes({STATE})")
    finally:
        ff.close()
