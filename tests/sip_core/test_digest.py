"""Digest authentication (RFC 7616 vectors, RFC 8760 algorithms): the client's answer and the
server's check, with stale nonces, replayed nonce-counts and wrong passwords refused."""

from __future__ import annotations

import pytest

from voxlab.sip.digest import (
    Challenge, Credentials, DigestError, DigestServer, answer_challenge, choose_challenge,
    digest_response,
)

# RFC 7616 3.9.1
VECTOR = dict(user="Mufasa", realm="http-auth@example.org", password="Circle of Life", method="GET",
              uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop="auth",
              nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")


@pytest.mark.parametrize("algorithm, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")])
def test_rfc7616_vectors(algorithm, expected):
    assert digest_response(algorithm, **VECTOR) == expected


def test_rfc2617_style_without_qop():
    # RFC 2617 3.5 example (MD5, no qop: H(HA1:nonce:HA2)).
    got = digest_response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                          "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093")
    assert got == "670fd8c2df070c60b045671b8b24ff02"


def test_challenge_round_trip_and_quoting():
    ch = Challenge.parse('Digest realm="a \\"b\\", c", nonce="n1", algorithm=SHA-256, '
                         'qop="auth,auth-int", opaque="o", stale=TRUE')
    assert (ch.realm, ch.nonce, ch.algorithm, ch.qop, ch.opaque, ch.stale) == (
        'a "b", c', "n1", "SHA-256", ["auth", "auth-int"], "o", True)
    assert Challenge.parse(ch.to_header()) == ch


def test_choose_prefers_sha256_and_refuses_what_it_cannot_do():
    md5 = 'Digest realm="r", nonce="1", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="1", algorithm=SHA-256, qop="auth"'
    assert choose_challenge([md5, sha]).algorithm == "SHA-256"
    assert choose_challenge([md5]).algorithm == "MD5"
    with pytest.raises(DigestError, match="SHA-512"):
        choose_challenge(['Digest realm="r", nonce="1", algorithm=SHA-512'])
    with pytest.raises(DigestError, match="auth-int"):
        choose_challenge(['Digest realm="r", nonce="1", qop="auth-int"'])
    with pytest.raises(DigestError, match="not Digest"):
        choose_challenge(['Basic realm="r"'])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server():
    clock = Clock()
    srv = DigestServer("voxlab", {"alice": "s3cret"}.get, nonce_lifetime=60, clock=clock)
    srv.test_clock = clock
    return srv


def login(server, password="s3cret", algorithm="SHA-256", nc=1, user="alice", challenge=None):
    challenge = challenge or choose_challenge([v for v in server.challenges()
                                               if f"algorithm={algorithm}" in v])
    cred = answer_challenge(challenge, "REGISTER", "sip:127.0.0.1", user, password, nc=nc)
    return challenge, cred, server.check("REGISTER", cred.to_header())


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_right_password_is_accepted(server, algorithm):
    offered = server.challenges()
    assert [Challenge.parse(v).algorithm for v in offered] == ["SHA-256", "MD5"]
    _, cred, verdict = login(server, algorithm=algorithm)
    assert verdict.ok and verdict.user == "alice", verdict
    assert Credentials.parse(cred.to_header()) == cred


def test_wrong_password_and_unknown_user(server):
    assert login(server, password="guess")[2].reason == "wrong password"
    assert not login(server, user="mallory")[2].ok


def test_replayed_nonce_count_is_refused_a_higher_one_is_not(server):
    challenge, cred, verdict = login(server)
    assert verdict.ok
    again = server.check("REGISTER", cred.to_header())
    assert not again.ok and "replayed" in again.reason
    assert login(server, challenge=challenge, nc=2)[2].ok
    assert not login(server, challenge=challenge, nc=2)[2].ok


def test_expired_nonce_is_stale_only_when_the_password_was_right(server):
    challenge = choose_challenge(server.challenges())
    server.test_clock.now += 61
    stale = login(server, challenge=challenge)[2]
    assert not stale.ok and stale.stale and stale.reason == "nonce expired"
    wrong = login(server, challenge=challenge, password="guess")[2]
    assert not wrong.ok and not wrong.stale


def test_forged_nonce_and_other_realm(server):
    forged = Challenge("voxlab", "1234.abcd.ffff", "MD5", ["auth"])
    assert login(server, challenge=forged)[2].reason == "nonce not issued here"
    other = DigestServer("other", {"alice": "s3cret"}.get)
    assert "realm" in login(server, challenge=choose_challenge(other.challenges()))[2].reason


def test_credentials_without_qop_are_refused(server):
    ch = choose_challenge(server.challenges())
    ch.qop = []
    verdict = login(server, challenge=ch)[2]
    assert not verdict.ok and "qop=auth is required" in verdict.reason
