"""The registrar with a real phone: baresip 1.0 registers with Digest authentication, a
wrong password is refused with 403 after the challenge, a replayed nonce-count is refused,
several contacts per user are kept, and bindings survive a server restart."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import _finish, _start
from tests.interop.baresip import BARESIP, Baresip, sip_messages
from tests.peers.server import REPO_ROOT
from voxlab.sip.digest import answer_challenge, choose_challenge

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(BARESIP is None, reason="baresip (Debian baresip-core) is not on PATH")]

CONFIG = """
[users]
alice = "wonder-land"
"""
HELLO_WAV = REPO_ROOT / "scenarios" / "hello.wav"


def users_list(srv) -> dict:
    out = subprocess.run([sys.executable, "-m", "voxlab.cli", "users", "list", "--json",
                          "--data-dir", str(srv.data_dir), "--config", str(srv.config)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {u["user"]: u for u in json.loads(out.stdout)["users"]}


def phone(tmp_path, name, srv, password, avoid=()):
    account = (f"<sip:alice@{srv.host}:{srv.sip_port}>;auth_pass={password};regint=600;"
               f"answermode=auto;audio_codecs=PCMU")
    return Baresip(tmp_path / name, source=HELLO_WAV, account=account, avoid=[srv.rtp_range, *avoid])


def wait_bindings(srv, n: int, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        bindings = users_list(srv)["alice"]["bindings"]
        if len(bindings) >= n or time.monotonic() > deadline:
            return bindings
        time.sleep(0.2)


class RegisterClient:
    """A bare UDP REGISTER client (to replay a request exactly, which no phone will do)."""

    def __init__(self, srv) -> None:
        self.srv = srv
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((srv.host, 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.cseq = 0

    def send(self, auth: str | None = None, contact: bool = True) -> tuple[int, str]:
        self.cseq += 1
        lines = [f"REGISTER sip:{self.srv.host}:{self.srv.sip_port} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.srv.host}:{self.port};branch=z9hG4bK-r{self.cseq}-{time.time_ns()};rport",
                 "Max-Forwards: 70", f"From: <sip:alice@{self.srv.host}>;tag=rc1",
                 f"To: <sip:alice@{self.srv.host}>", f"Call-ID: replay-{self.port}@{self.srv.host}",
                 f"CSeq: {self.cseq} REGISTER"]
        if contact:
            lines.append(f"Contact: <sip:alice@{self.srv.host}:{self.port}>;expires=300")
        if auth:
            lines.append(f"Authorization: {auth}")
        self.sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(),
                         (self.srv.host, self.srv.sip_port))
        while True:
            data = self.sock.recv(65535).decode()
            status = int(data.split(" ", 2)[1])
            if status >= 200:
                return status, data

    def credentials(self, password: str = "wonder-land", contact: bool = True) -> str:
        """Send an unauthenticated REGISTER and answer its 401 (nc=1): the Authorization value."""
        status, data = self.send(contact=contact)
        assert status == 401, data
        challenge = choose_challenge(re.findall(r"^WWW-Authenticate: (.*?)\r$", data, re.M))
        return answer_challenge(challenge, "REGISTER", f"sip:{self.srv.host}:{self.srv.sip_port}",
                                "alice", password, nc=1).to_header()

    def close(self) -> None:
        self.sock.close()


def test_baresip_registers_with_digest_and_a_wrong_password_gets_403(tmp_path):
    srv = _start(tmp_path / "srv", config=CONFIG)
    good = phone(tmp_path, "good", srv, "wonder-land")
    bad = None
    try:
        good.start()
        assert good.wait_for(r"200 OK|registered successfully", timeout=15), good.output()
        trace = sip_messages(good.output())
        statuses = [m.status for m in trace if m.cseq_method == "REGISTER" and m.status]
        assert statuses[:2] == [401, 200], statuses
        [binding] = wait_bindings(srv, 1)
        assert binding["source"] == f"udp:127.0.0.1:{good.sip_port}", binding

        bad = phone(tmp_path, "bad", srv, "guess", avoid=[good.ports])   # after good binds its ports
        bad.start()
        # baresip prints its "403" status line and its trace of the response separately, in
        # either order: wait for the trace itself, not for the first "403" in the output.
        deadline = time.monotonic() + 15
        while True:
            statuses = [m.status for m in sip_messages(bad.output())
                        if m.cseq_method == "REGISTER" and m.status]
            if 403 in statuses or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert statuses[:2] == [401, 403], (statuses, bad.output())
        assert len(users_list(srv)["alice"]["bindings"]) == 1
    finally:
        good.stop()
        if bad is not None:
            bad.stop()
        problem = _finish(srv)
    assert problem is None, problem


def test_replayed_nonce_count_is_refused(tmp_path):
    srv = _start(tmp_path / "srv", config=CONFIG)
    client = RegisterClient(srv)
    try:
        cred = client.credentials()
        assert client.send(cred)[0] == 200
        status, data = client.send(cred)                     # the same nc again, on a new request
        assert status == 403 and "replayed" in data.split("\r\n", 1)[0], data
    finally:
        client.close()
        problem = _finish(srv)
    assert problem is None, problem


def test_two_phones_for_one_user_and_bindings_survive_a_restart(tmp_path):
    srv = _start(tmp_path / "srv", config=CONFIG)
    one = phone(tmp_path, "one", srv, "wonder-land")
    two = None
    try:
        one.start()
        assert one.wait_for(r"200 OK|registered successfully", timeout=15), one.output()
        two = phone(tmp_path, "two", srv, "wonder-land", avoid=[one.ports])   # after one binds its ports
        two.start()
        bindings = wait_bindings(srv, 2)
        assert len(bindings) == 2, bindings
    finally:
        one.stop()
        if two is not None:
            two.stop()
        problem = _finish(srv)
    assert problem is None, problem
    # baresip unregisters on quit; what a crashed or unplugged phone leaves stays bound
    again = _start(tmp_path / "srv", config=CONFIG)
    client = RegisterClient(again)
    try:
        assert client.send(client.credentials())[0] == 200
        bound = f"<sip:alice@{again.host}:{client.port}>"
    finally:
        client.close()
        assert _finish(again) is None
    third = _start(tmp_path / "srv", config=CONFIG)
    client = RegisterClient(third)
    try:
        status, data = client.send(client.credentials(contact=False), contact=False)      # a query
        assert status == 200
        contacts = re.findall(r"^Contact: (.*?)\r$", data, re.M)
        assert any(c.startswith(bound) for c in contacts), data
        assert [b["contact"] for b in users_list(third)["alice"]["bindings"]] == [bound.strip("<>")]
    finally:
        client.close()
        assert _finish(third) is None


def test_calling_a_user_rings_both_phones_the_first_answers_the_other_is_cancelled(tmp_path):
    import threading

    import numpy as np

    from tests.e2e.test_call_media_api import wait_hearing
    from tests.interop.test_baresip import write_wav
    from tests.peers.sipua import SipUA
    from voxlab.media.analysis import dominant_frequency, rms_dbfs
    from voxlab.media.tones import sine
    from voxlab.media.wav import read_wav

    srv = _start(tmp_path / "srv", config=CONFIG)            # the bundled scenarios: user.py
    tone = write_wav(tmp_path / "tone600.wav", sine(600.0, 30.0, amplitude=0.4))
    account = f"<sip:alice@{srv.host}:{srv.sip_port}>;auth_pass=wonder-land;regint=600;audio_codecs=PCMU"
    # Each phone is started before the next picks its ports (a free port stays free
    # until someone binds it: two phones made together could pick the same one).
    answers = Baresip(tmp_path / "answers", source=tone, account=account + ";answermode=auto",
                      avoid=[srv.rtp_range])
    rings = None
    try:
        answers.start()
        assert answers.wait_for(r"200 OK|registered successfully", timeout=15), answers.output()
        rings = Baresip(tmp_path / "rings", source=tone, account=account + ";answermode=manual",
                        avoid=[srv.rtp_range, answers.ports])
        rings.start()
        assert rings.wait_for(r"200 OK|registered successfully", timeout=15), rings.output()
        assert len(wait_bindings(srv, 2)) == 2, users_list(srv)
        with SipUA(srv.host, srv.sip_port) as ua:
            call = ua.call("alice", codecs=("PCMU",))
            stop = threading.Event()
            sender = call.rtp.send_audio_async(sine(900.0, 20.0, amplitude=0.3), stop=stop)
            try:
                wait_hearing(call.rtp, 600.0, timeout=15)        # alice's phone, through voxlab
                time.sleep(1.0)                                   # let her phone record the caller
            finally:
                stop.set()
                sender.join(5)
            call.bye()
        assert rings.wait_for(r"^CANCEL sip:", timeout=10), rings.output()
        statuses = [m.status for m in sip_messages(rings.output()) if m.cseq_method == "INVITE" and m.status]
        assert 487 in statuses, statuses
    finally:
        answers.stop()
        if rings is not None:
            rings.stop()
        problem = _finish(srv)
    dumps = answers.dumps("dec")
    assert dumps, answers.output()
    heard = read_wav(dumps[0]).astype(np.float64)
    loud = heard[np.abs(heard) > 500]
    assert len(loud) > 4000 and abs(dominant_frequency(heard) - 900) < 20, (
        f"alice's phone heard {dominant_frequency(heard):.0f} Hz at {rms_dbfs(heard):.1f} dBFS")
    assert problem is None, problem
