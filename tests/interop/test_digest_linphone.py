"""The registrar's Digest with a real phone no one here wrote: linphonec 5.1 (liblinphone,
belle-sip; Debian ``linphone-cli``) registers with SHA-256 (RFC 7616, RFC 8760) when voxlab
offers it, picks SHA-256 when offered with MD5, still works with MD5 alone, and a wrong
password is refused with 403 after the challenge and leaves no binding.

What each side shows:

- linphonec's ``-d 6`` log has every SIP message it sent and received: the challenges, the
  ``Authorization`` it answered with, the final status. The test recomputes that answer
  with ``hashlib`` (not voxlab's digest code), so the algorithm named is the one used.
- voxlab stores the binding with the Call-ID and CSeq of the REGISTER it accepted
  (``DATA_DIR/directory.sqlite``): they are the ones of that authorized REGISTER. voxlab
  refuses credentials for an algorithm it did not offer, so with ``["SHA-256"]`` alone a
  binding exists only if SHA-256 was used.
- a call to ``alice`` through voxlab (the bundled ``user.py``) rings linphonec, which
  answers by itself (``-a``).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.interop.linphone import LINPHONEC, Linphone, LinphoneSip
from tests.peers.sipua import SipError, SipUA

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(LINPHONEC is None,
                                 reason="linphonec (Debian package linphone-cli) is not on PATH")]

PASSWORD = "secret"
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def config(algorithms: list[str]) -> str:
    return f'[users]\nalice = "{PASSWORD}"\n\n[registrar]\nalgorithms = {json.dumps(algorithms)}\n'


def users_list(srv) -> dict:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "users", "list", "--json",
                          "--data-dir", str(srv.data_dir), "--config", str(srv.config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {u["user"]: u for u in json.loads(out.stdout)["users"]}


def stored_bindings(srv, user: str = "alice") -> list[dict]:
    """The registrar's rows for ``user``, read-only, with the Call-ID and CSeq of the
    REGISTER that made each."""
    db = sqlite3.connect(f"file:{srv.data_dir / 'directory.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT contact, call_id, cseq, transport, host, port FROM bindings "
                          "WHERE user = ? AND expires_at > ?", (user, time.time())).fetchall()
        return [dict(r) for r in rows]
    finally:
        db.close()


def digest_params(value: str) -> dict[str, str]:
    """The parameters of a ``Digest ...`` header value (a small parser of our own)."""
    scheme, _, rest = value.strip().partition(" ")
    assert scheme.lower() == "digest", value
    return {k.lower(): (q if q else t)
            for k, q, t in re.findall(r'([\w-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)}


def expected_response(algorithm: str, p: dict[str, str], method: str = "REGISTER") -> str:
    """RFC 7616 3.4.1 with qop=auth, from scratch."""
    h = lambda s: HASHES[algorithm](s.encode()).hexdigest()        # noqa: E731
    ha1 = h(f"{p['username']}:{p['realm']}:{PASSWORD}")
    ha2 = h(f"{method}:{p['uri']}")
    return h(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")


def register_exchange(phone: Linphone) -> list[LinphoneSip]:
    """The REGISTER requests and responses of linphonec's first registration, in order."""
    return [m for m in phone.sip_messages() if m.cseq and m.cseq[1] == "REGISTER"]


@pytest.mark.parametrize("offered, used", [(["SHA-256"], "SHA-256"),
                                           (["SHA-256", "MD5"], "SHA-256"),
                                           (["MD5"], "MD5")],
                         ids=["sha256-only", "sha256-and-md5", "md5-only"])
def test_linphonec_registers_with_digest_and_a_call_to_the_user_rings_it(voxlab_factory, tmp_path,
                                                                          offered, used):
    srv = voxlab_factory(config=config(offered))          # the bundled scenarios: user.py
    phone = Linphone(tmp_path / "alice", user="alice", password=PASSWORD,
                     registrar=(srv.host, srv.sip_port), avoid=[srv.rtp_range])
    try:
        phone.start()
        assert phone.wait_registration() == "LinphoneRegistrationOk", phone.describe()

        # linphonec's side: challenged with exactly what voxlab offers, answered with `used`
        exchange = register_exchange(phone)
        statuses = [m.status for m in exchange if m.direction == "in"]
        assert statuses[:2] == [401, 200], phone.describe()
        challenge = next(m for m in exchange if m.status == 401)
        offers = [digest_params(v) for v in challenge.header_all("WWW-Authenticate")]
        assert [o.get("algorithm") for o in offers] == offered, challenge.text()
        assert all(o.get("qop") == "auth" and o.get("realm") == "voxlab" for o in offers), challenge.text()
        ok = next(m for m in exchange if m.status == 200)
        authorized = next(m for m in exchange if m.direction == "out" and m.cseq == ok.cseq)
        auth = authorized.header("Authorization")
        assert auth, authorized.text()
        p = digest_params(auth)
        assert p.get("algorithm", "MD5").upper() == used, auth
        assert p["qop"] == "auth" and p["username"] == "alice" and p["nonce"] == offers[0]["nonce"], auth
        assert len(p["response"]) == HASHES[used]().digest_size * 2, auth
        assert p["response"].lower() == expected_response(used, p), auth

        # voxlab's side: it stored the binding made by exactly that (SHA-256-)authorized REGISTER
        [row] = stored_bindings(srv)
        assert (row["call_id"], row["cseq"]) == (authorized.header("Call-ID"), authorized.cseq[0]), (
            row, authorized.text())
        assert (row["transport"], row["host"], row["port"]) == ("udp", "127.0.0.1", phone.sip_port), row
        [binding] = users_list(srv)["alice"]["bindings"]
        assert binding["contact"].startswith(f"sip:alice@127.0.0.1:{phone.sip_port}"), binding
        assert binding["source"] == f"udp:127.0.0.1:{phone.sip_port}", binding

        # and the binding works: voxlab rings linphonec, which answers (-a)
        with SipUA(srv.host, srv.sip_port) as ua:
            call = ua.call("alice", codecs=("PCMU",), timeout=15)
            try:
                assert phone.wait_for(r"^Call \d+ with .* connected\.", stdout=True), phone.describe()
                assert any(m.method == "INVITE" and m.direction == "in" for m in phone.sip_messages())
            finally:
                call.bye()
        assert srv.wait_for_log(r"ringing alice's phones"), srv.describe()
    finally:
        phone.stop()
    # linphonec unregisters when it quits (it waits for the 200 before it exits)
    deadline = time.monotonic() + 10
    while stored_bindings(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored_bindings(srv) == [], phone.describe()


def test_linphonec_with_a_wrong_password_gets_403_and_no_binding(voxlab_factory, tmp_path):
    srv = voxlab_factory(config=config(["SHA-256"]))
    phone = Linphone(tmp_path / "alice", user="alice", password="not-" + PASSWORD,
                     registrar=(srv.host, srv.sip_port), avoid=[srv.rtp_range])
    try:
        phone.start()
        assert phone.wait_registration() == "LinphoneRegistrationFailed", phone.describe()
        exchange = register_exchange(phone)
        responses = [m for m in exchange if m.direction == "in"]
        assert [m.status for m in responses][:2] == [401, 403], phone.describe()
        assert "wrong password" in responses[1].start, responses[1].text()
        refused = next(m for m in exchange if m.direction == "out" and m.cseq == responses[1].cseq)
        assert digest_params(refused.header("Authorization") or "Digest")["algorithm"] == "SHA-256", (
            refused.text())
        assert srv.wait_for_log(rf"REGISTER from udp:127\.0\.0\.1:{phone.sip_port} refused: "
                                r"403 Forbidden \(wrong password\)"), srv.describe()
        assert stored_bindings(srv) == []
        assert users_list(srv)["alice"]["bindings"] == []
        with SipUA(srv.host, srv.sip_port) as ua:
            with pytest.raises(SipError) as refused_call:
                ua.call("alice", codecs=("PCMU",), timeout=15)
        assert refused_call.value.status == 480, refused_call.value
    finally:
        phone.stop()
