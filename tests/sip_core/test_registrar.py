"""The registrar on its own (sans-IO): digest-authenticated REGISTER, bindings with expiry,
several contacts, removal by Expires: 0 and '*', out-of-order CSeq, and persistence."""

from __future__ import annotations

import pytest

from voxlab.sip.digest import answer_challenge, choose_challenge
from voxlab.sip.location import Directory
from voxlab.sip.message import parse_message
from voxlab.sip.registrar import Registrar


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def register(contacts: list[str], *, user="alice", cseq=1, call_id="reg-1", expires=None,
             auth: str | None = None):
    lines = ["REGISTER sip:127.0.0.1 SIP/2.0",
             "Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-%d;rport" % cseq,
             "Max-Forwards: 70",
             f"From: <sip:{user}@127.0.0.1>;tag=t1", f"To: <sip:{user}@127.0.0.1>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER"]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if auth:
        lines.append(f"Authorization: {auth}")
    return parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


@pytest.fixture
def reg(tmp_path):
    clock = Clock()
    directory = Directory(tmp_path / "directory.sqlite", {"alice": "s3cret"}, clock=clock)
    directory.add_user("bob", "b0b")
    registrar = Registrar(directory, clock=clock, algorithms=("SHA-256", "MD5"))
    registrar.test_clock = clock
    yield registrar
    directory.close()


class Phone:
    """Answers the registrar's challenges as a phone does (one nc per nonce)."""

    def __init__(self, reg, user="alice", password="s3cret"):
        self.reg, self.user, self.password = reg, user, password
        self.challenge, self.nc, self.cseq = None, 0, 0

    def send(self, contacts, **kw):
        kw.setdefault("user", self.user)
        for _ in range(2):
            self.cseq += 1
            auth = None
            if self.challenge is not None:
                self.nc += 1
                auth = answer_challenge(self.challenge, "REGISTER", "sip:127.0.0.1", self.user,
                                        self.password, nc=self.nc).to_header()
            request = register(contacts, cseq=self.cseq, auth=auth, **kw)
            out = self.reg.register(request, "udp", "192.0.2.9", 40000)
            if out.status != 401:
                return out
            self.challenge = choose_challenge([v for k, v in out.headers if k == "WWW-Authenticate"])
            self.nc = 0
        return out


def contacts_of(out):
    return sorted(v for k, v in out.headers if k == "Contact")


def test_unauthenticated_register_is_challenged_with_sha256_and_md5(reg):
    out = reg.register(register(["<sip:alice@10.0.0.5:5062>"]), "udp", "10.0.0.5", 5062)
    assert out.status == 401
    algs = [choose_challenge([v]).algorithm for k, v in out.headers if k == "WWW-Authenticate"]
    assert algs == ["SHA-256", "MD5"]


def test_register_binds_and_records_the_source(reg):
    out = Phone(reg).send(["<sip:alice@10.0.0.5:5062>;expires=600"])
    assert out.status == 200 and out.user == "alice"
    assert contacts_of(out) == ["<sip:alice@10.0.0.5:5062>;expires=600"]
    [b] = reg.directory.bindings("alice")
    assert (b.transport, b.host, b.port) == ("udp", "192.0.2.9", 40000)    # NAT: where it came from


def test_wrong_password_is_403_and_binds_nothing(reg):
    out = Phone(reg, password="guess").send(["<sip:alice@10.0.0.5:5062>"])
    assert out.status == 403 and "wrong password" in out.reason
    assert reg.directory.bindings("alice") == []


def test_a_user_may_not_register_another(reg):
    phone = Phone(reg, user="bob", password="b0b")
    out = phone.send(["<sip:bob@10.0.0.5>"], user="bob")
    assert out.status == 200
    # bob's credentials, alice's AOR
    phone.cseq += 1
    phone.nc += 1
    auth = answer_challenge(phone.challenge, "REGISTER", "sip:127.0.0.1", "bob", "b0b", nc=phone.nc)
    out = reg.register(register(["<sip:x@10.0.0.5>"], user="alice", cseq=phone.cseq,
                                auth=auth.to_header()), "udp", "10.0.0.5", 5062)
    assert out.status == 403


def test_several_contacts_expiry_and_removal(reg):
    phone = Phone(reg)
    assert phone.send(["<sip:alice@10.0.0.5:5062>;expires=600", "<sip:alice@10.0.0.6:5062>"],
                      expires=120).status == 200
    assert len(reg.directory.bindings("alice")) == 2
    reg.test_clock.now += 121                # the second had the Expires header's 120 s
    assert [b.contact for b in reg.directory.bindings("alice")] == ["sip:alice@10.0.0.5:5062"]
    out = phone.send(["<sip:alice@10.0.0.5:5062>;expires=0"])
    assert out.status == 200 and contacts_of(out) == []


def test_star_removes_all_and_needs_expires_zero(reg):
    phone = Phone(reg)
    phone.send(["<sip:alice@10.0.0.5:5062>", "<sip:alice@10.0.0.6:5062>"])
    assert phone.send(["*"]).status == 400
    assert phone.send(["*"], expires=0).status == 200
    assert reg.directory.bindings("alice") == []


def test_too_brief_and_out_of_order(reg):
    phone = Phone(reg)
    phone.cseq = 10
    out = phone.send(["<sip:alice@10.0.0.5:5062>;expires=10"])
    assert out.status == 423 and ("Min-Expires", "60") in out.headers
    assert phone.send(["<sip:alice@10.0.0.5:5062>"]).status == 200
    phone.cseq -= 5
    assert phone.send(["<sip:alice@10.0.0.5:5062>"]).status == 500


def test_query_lists_bindings_and_bindings_survive_a_restart(reg, tmp_path):
    Phone(reg).send(["<sip:alice@10.0.0.5:5062>"])
    again = Directory(tmp_path / "directory.sqlite", {"alice": "s3cret"}, clock=reg.test_clock)
    try:
        fresh = Registrar(again, clock=reg.test_clock, algorithms=("SHA-256",))
        out = Phone(fresh).send([])                          # a query: no Contact
        assert out.status == 200 and contacts_of(out) == ["<sip:alice@10.0.0.5:5062>;expires=3600"]
    finally:
        again.close()


def test_config_users_are_read_only(reg):
    with pytest.raises(ValueError, match="config file"):
        reg.directory.remove_user("alice")
    assert dict(reg.directory.users()) == {"alice": "config", "bob": "store"}
