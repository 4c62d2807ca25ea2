"""Garbage at the SIP ports must not hurt the server (issue 2).

Random bytes, truncated requests, bad CSeq (-> 400 where a response can be
built), messages at and over the size limit (513 over TCP), half a message on
a TCP connection that then closes; afterwards a normal sipp call to echo
still completes and the server process is alive.
"""

from __future__ import annotations

import random
import re
import socket
import time

import pytest

from tests.peers.sipp import SIPP, run_sipp
from tests.peers.sipua import SipUA
from voxlab.sip.message import MAX_MESSAGE_SIZE

pytestmark = pytest.mark.e2e


def _request(host, port, lport, *, method="INVITE", cseq=None, transport="UDP",
             extra="", body="", call_id=None, content_length=None) -> bytes:
    branch = "z9hG4bK" + "%012x" % random.getrandbits(48)
    cseq = cseq if cseq is not None else f"1 {method}"
    call_id = call_id or "%016x@garbage" % random.getrandbits(64)
    cl = len(body.encode()) if content_length is None else content_length
    return (f"{method} sip:echo@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {host}:{lport};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:fuzz@{host}:{lport}>;tag={random.getrandbits(32):08x}\r\n"
            f"To: <sip:echo@{host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq}\r\n"
            f"Contact: <sip:fuzz@{host}:{lport}>\r\n"
            f"{extra}"
            f"Content-Length: {cl}\r\n\r\n{body}").encode()


SDP = ("v=0\r\no=fuzz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


class UdpProbe:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.lport = self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, (self.host, self.port))

    def responses(self, wait: float = 0.5) -> list[bytes]:
        out = []
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except (socket.timeout, ConnectionRefusedError):
                continue
            out.append(data)

    def close(self):
        self.sock.close()


def _status(data: bytes) -> int | None:
    m = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(m.group(1)) if m else None


def _tcp(host, port) -> socket.socket:
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(2)
    return s


def _tcp_read_response(s: socket.socket, wait: float = 2.0) -> bytes:
    buf = b""
    end = time.monotonic() + wait
    while b"\r\n\r\n" not in buf and time.monotonic() < end:
        try:
            chunk = s.recv(65535)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def _assert_healthy(server, sipp_workdir=None):
    assert server.alive(), "server died\n" + server.describe()
    with SipUA(server.host, server.sip_port) as ua:
        assert ua.options().status == 200
    if SIPP and sipp_workdir is not None:
        res = run_sipp(server.host, server.sip_port, "uac", service="echo",
                       workdir=sipp_workdir, duration_ms=500)
        assert res.ok, res.explain(server)
    assert server.alive(), "server died\n" + server.describe()


# --------------------------------------------------------------------------- UDP

def test_udp_random_bytes_and_fragments(server, sipp_workdir):
    rng = random.Random(1234)
    probe = UdpProbe(server.host, server.sip_port)
    try:
        full = _request(server.host, server.sip_port, probe.lport, body=SDP,
                        extra="Content-Type: application/sdp\r\n")
        for _ in range(200):
            probe.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400))))
        for cut in (1, 7, 20, 60, len(full) // 2, len(full) - 10):
            probe.send(full[:cut])                     # truncated INVITE
        probe.send(b"\r\n\r\n")                        # keep-alive
        probe.send(b"\x00" * 1000)
        probe.send(b"SIP/2.0 200 OK\r\n\r\n")           # a response to nothing
        probe.send(b"INVITE\r\n\r\n")
        probe.send(b"INVITE sip:echo@x SIP/2.0\r\nVia: nonsense\r\n\r\n")
        probe.send("INVITE sip:échø@127.0.0.1 SIP/2.0\r\n\r\n".encode("latin-1"))
        got = probe.responses(1.0)
        # nothing here must produce a success
        assert not [d for d in got if (_status(d) or 0) < 300 and _status(d) != 100], got
    finally:
        probe.close()
    _assert_healthy(server, sipp_workdir)


@pytest.mark.parametrize("cseq", ["abc INVITE", "", "1", "-5 INVITE", "99999999999 INVITE",
                                  "1 BYE"], ids=["not-a-number", "empty", "no-method",
                                                 "negative", "too-big", "method-mismatch"])
def test_udp_bad_cseq_gets_400(server, cseq):
    probe = UdpProbe(server.host, server.sip_port)
    try:
        probe.send(_request(server.host, server.sip_port, probe.lport, cseq=cseq))
        got = probe.responses(1.5)
    finally:
        probe.close()
    statuses = [_status(d) for d in got]
    assert 400 in statuses, f"CSeq {cseq!r}: expected 400, got {statuses}\n" + server.describe(40)
    assert server.alive()


def test_udp_missing_call_id(server):
    """Without a Call-ID no proper response can be built (it must copy the
    Call-ID): a 400 or silence are both fine, anything else is not."""
    probe = UdpProbe(server.host, server.sip_port)
    try:
        data = _request(server.host, server.sip_port, probe.lport)
        probe.send(re.sub(rb"Call-ID: [^\r]*\r\n", b"", data))
        got = probe.responses(1.0)
    finally:
        probe.close()
    statuses = [_status(d) for d in got]
    assert set(statuses) <= {100, 400}, f"INVITE without Call-ID: got {statuses}"
    assert server.alive()


def _call_id(data: bytes) -> str | None:
    m = re.search(rb"\r\nCall-ID: ([^\r]*)\r\n", data)
    return m.group(1).decode() if m else None


def test_udp_large_datagrams(server, sipp_workdir):
    """No datagram can pass MAX_MESSAGE_SIZE (an IPv4 UDP payload is at most 65,507
    bytes), so a large one is served like any other; only a Content-Length that
    takes a message past the limit gets 513."""
    assert MAX_MESSAGE_SIZE >= 65507
    probe = UdpProbe(server.host, server.sip_port)
    host, port, lport = server.host, server.sip_port, probe.lport
    try:
        junk = "X-Junk: " + "a" * 60000 + "\r\n"
        many, lines = "", (f"X-H{i}: {i}\r\n" for i in range(5000))
        for line in lines:                                 # thousands of headers, under 60 kB
            if len(many) + len(line) > 60000:
                break
            many += line
        sent = {
            "big-header": (_request(host, port, lport, method="OPTIONS", call_id="big-header",
                                    extra=junk), 200),
            "many-headers": (_request(host, port, lport, method="OPTIONS", call_id="many-headers",
                                      extra=many), 200),
            # Content-Length claiming more than the datagram holds (RFC 3261 18.3)
            "short-body": (_request(host, port, lport, method="OPTIONS", call_id="short-body",
                                    body="x" * 10, content_length=5000), 400),
            # ... and more than any message may be
            "too-long": (_request(host, port, lport, method="OPTIONS", call_id="too-long",
                                  body="x" * 10, content_length=MAX_MESSAGE_SIZE), 513),
        }
        for data, _ in sent.values():
            assert len(data) < 65507
            probe.send(data)
        got = {_call_id(d): _status(d) for d in probe.responses(1.5)}
        assert got == {name: status for name, (_, status) in sent.items()}, got
    finally:
        probe.close()
    _assert_healthy(server, sipp_workdir)


# --------------------------------------------------------------------------- TCP

def test_tcp_half_message_then_close(server, sipp_workdir):
    full = _request(server.host, server.sip_port, 5999, transport="TCP", body=SDP,
                    extra="Content-Type: application/sdp\r\n")
    for cut in (10, len(full) // 2, len(full) - 5):
        s = _tcp(server.host, server.sip_port)
        s.sendall(full[:cut])
        time.sleep(0.05)
        s.close()
    # abortive close (RST) in the middle of a message
    s = _tcp(server.host, server.sip_port)
    s.sendall(full[: len(full) // 2])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    _assert_healthy(server, sipp_workdir)


def test_tcp_garbage_and_oversized(server, sipp_workdir):
    rng = random.Random(99)
    s = _tcp(server.host, server.sip_port)
    try:
        s.sendall(bytes(rng.getrandbits(8) for _ in range(20000)))
    except OSError:
        pass                       # the server may hang up on us: fine
    s.close()
    # a header section that never ends: the server must not buffer forever
    s = _tcp(server.host, server.sip_port)
    try:
        s.sendall(b"INVITE sip:echo@127.0.0.1 SIP/2.0\r\n")
        for _ in range(64):       # 4 MB of one header line
            s.sendall(b"X-Junk: " + b"a" * 65536)
    except OSError:
        pass                      # the server closed the connection: the right answer
    finally:
        s.close()
    # bad Content-Length on a stream
    s = _tcp(server.host, server.sip_port)
    try:
        s.sendall(_request(server.host, server.sip_port, s.getsockname()[1], transport="TCP",
                           method="OPTIONS", content_length=-1))
        s.sendall(_request(server.host, server.sip_port, s.getsockname()[1], transport="TCP",
                           method="OPTIONS").replace(b"Content-Length: 0", b"Content-Length: x"))
    except OSError:
        pass
    s.close()
    _assert_healthy(server, sipp_workdir)


def _tcp_read_until_closed(s: socket.socket, wait: float = 3.0) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it closed the connection within ``wait``."""
    buf = b""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            chunk = s.recv(65535)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return buf, True
        if not chunk:
            return buf, True
        buf += chunk
    return buf, False


def test_tcp_message_over_the_limit_gets_513_and_the_connection_closes(server, sipp_workdir):
    s = _tcp(server.host, server.sip_port)
    lport = s.getsockname()[1]
    try:
        s.sendall(_request(server.host, server.sip_port, lport, transport="TCP", method="OPTIONS",
                           call_id="tcp-ok"))
        head = _request(server.host, server.sip_port, lport, transport="TCP", method="OPTIONS",
                        call_id="tcp-too-long", content_length=MAX_MESSAGE_SIZE + 1)
        try:
            s.sendall(head + b"x" * 4000)              # the start of a body that will not fit
        except OSError:
            pass
        data, closed = _tcp_read_until_closed(s)
    finally:
        s.close()
    responses = [d for d in data.split(b"SIP/2.0 ")[1:]]
    assert [(int(r[:3]), _call_id(b"\r\n" + r.split(b"\r\n", 1)[1])) for r in responses] == [
        (200, "tcp-ok"), (513, "tcp-too-long")], data[:600]
    assert closed, "the server kept a connection it cannot resynchronise"
    assert server.wait_for_log(r"closing SIP TCP connection from tcp:127\.0\.0\.1:%d: message of \d+ "
                               r"bytes exceeds the %d-byte limit" % (lport, MAX_MESSAGE_SIZE))

    # A header section that never ends cannot be answered: closed, with a log line.
    s = _tcp(server.host, server.sip_port)
    lport = s.getsockname()[1]
    try:
        try:
            s.sendall(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n" + b"X-Junk: " + b"a" * MAX_MESSAGE_SIZE)
        except OSError:
            pass
        data, closed = _tcp_read_until_closed(s)
    finally:
        s.close()
    assert data == b"" and closed
    assert server.wait_for_log(r"closing SIP TCP connection from tcp:127\.0\.0\.1:%d: header block "
                               r"exceeds" % lport)
    _assert_healthy(server, sipp_workdir)


def test_tcp_folded_content_length_is_served(server):
    """RFC 3261 7.3.1: 'Content-Length:' with its value on a continuation line is legal."""
    s = _tcp(server.host, server.sip_port)
    lport = s.getsockname()[1]
    try:
        for n, folded in enumerate((b"Content-Length:\r\n 0", b"l:\r\n\t0")):
            s.sendall(_request(server.host, server.sip_port, lport, transport="TCP", method="OPTIONS",
                               call_id=f"folded-{n}").replace(b"Content-Length: 0", folded))
            resp = _tcp_read_response(s)
            assert _status(resp) == 200 and _call_id(resp) == f"folded-{n}", resp[:300]
    finally:
        s.close()


def test_tcp_bad_cseq_gets_400(server):
    s = _tcp(server.host, server.sip_port)
    try:
        s.sendall(_request(server.host, server.sip_port, s.getsockname()[1], transport="TCP",
                           cseq="abc INVITE"))
        resp = _tcp_read_response(s)
    finally:
        s.close()
    assert _status(resp) == 400, f"expected 400 over TCP, got {resp[:200]!r}"


# ------------------------------------------------------------ parser strictness (issue 9)


def _mangle(data: bytes, kind: str) -> bytes:
    if kind == "no-version":
        return data.replace(b" SIP/2.0\r\n", b"\r\n", 1)
    if kind == "nul":
        return data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nSubject: a\x00b\r\n")
    if kind == "utf8":
        return data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nSubject: caf\xe9\r\n")
    if kind == "max-forwards":
        return data.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
    if kind == "content-length":
        return re.sub(rb"Content-Length: \d+", b"Content-Length: 99999999999999999999999", data)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind, names", [
    ("no-version", b"no SIP-Version"), ("nul", b"raw NUL octet in Subject"),
    ("utf8", b"invalid UTF-8 octet 0xe9 in Subject"), ("max-forwards", b"Max-Forwards is not a number"),
    ("content-length", b"does not fit in 64 bits")])
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_forbidden_input_gets_400_naming_the_problem(server, kind, names, transport):
    if transport == "udp":
        probe = UdpProbe(server.host, server.sip_port)
        try:
            probe.send(_mangle(_request(server.host, server.sip_port, probe.lport, method="OPTIONS"), kind))
            got = probe.responses(1.5)
        finally:
            probe.close()
    else:
        s = _tcp(server.host, server.sip_port)
        try:
            lport = s.getsockname()[1]
            s.sendall(_mangle(_request(server.host, server.sip_port, lport, method="OPTIONS",
                                       transport="TCP"), kind))
            got = [_tcp_read_response(s)]
        finally:
            s.close()
    assert got and _status(got[0]) == 400, f"{kind}: {got}\n" + server.describe(40)
    status_line = got[0].split(b"\r\n", 1)[0]
    assert names in status_line, status_line
    _assert_healthy(server)
