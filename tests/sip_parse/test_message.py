"""Headers, parse_message, serialisation and make_response."""

from __future__ import annotations

import pytest

from voxlab.sip.message import (
    MAX_MESSAGE_SIZE, Headers, SipParseError, SipRequest, SipResponse, canonical_name,
    make_response, new_branch, new_call_id, new_tag, parse_message,
)
from voxlab.sip.uri import NameAddr, SipUri, Via

INVITE = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    "Via: SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bKprox\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    "Allow: INVITE, ACK, CANCEL\r\n"
    "Allow: BYE\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 10\r\n"
    "\r\n"
    "0123456789"
).encode()


def test_parse_request_views():
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.version == "SIP/2.0"
    assert msg.uri == SipUri.parse("sip:bob@biloxi.example.com")
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.from_addr.display_name == "Alice" and msg.from_tag == "1928301774"
    assert msg.to_addr.display_name == "Bob" and msg.to_tag is None
    assert [v.host for v in msg.vias] == ["pc33.atlanta.example.com", "proxy.example.com"]
    assert msg.top_via.branch == msg.branch == "z9hG4bK776asdhds"
    assert msg.contact == NameAddr.parse("<sip:alice@pc33.atlanta.example.com>")
    assert msg.max_forwards == 70
    assert msg.content_type == "application/sdp"
    assert msg.body == b"0123456789"


def test_parse_response():
    raw = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\n"
           b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(raw)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert msg.to_tag == "2"
    assert msg.to_bytes() == raw


def test_compact_and_case_insensitive_names():
    raw = (b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=9\r\n"
           b"t: sip:a@b\r\ni: cid\r\nCSEQ: 2 OPTIONS\r\nm: <sip:x@h>\r\nk: timer, 100rel\r\n"
           b"o: presence\r\nu: dialog\r\nx: 1800\r\ny: abc\r\nc: text/plain\r\nl: 2\r\n\r\nhi")
    msg = parse_message(raw)
    names = [name for name, _ in msg.headers]
    assert names == ["Via", "From", "To", "Call-ID", "CSeq", "Contact", "Supported", "Supported",
                     "Event", "Allow-Events", "Session-Expires", "Identity", "Content-Type",
                     "Content-Length"]
    h = msg.headers
    assert h.get("call-id") == h.get("I") == h.get("CALL-ID") == "cid"
    assert h.get_all("supported") == ["timer", "100rel"]
    assert msg.cseq == (2, "OPTIONS")
    assert msg.body == b"hi"


def test_canonical_names():
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("call-id") == "Call-ID"
    assert canonical_name("l") == "Content-Length"
    assert canonical_name("X-Custom") == "X-Custom"


def test_folded_headers_are_unfolded():
    raw = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\n"
           b"From: <sip:x@y>\r\n\t;tag=9\r\nTo: sip:a@b\r\nCall-ID: cid\r\nCSeq: 2\r\n  OPTIONS\r\n"
           b"Subject: hello\r\n   world\r\n\r\n")
    msg = parse_message(raw)
    assert msg.top_via.branch == "z9hG4bK1"
    assert msg.from_tag == "9"
    assert msg.cseq == (2, "OPTIONS")
    assert msg.headers.get("Subject") == "hello world"


def test_multi_valued_headers_split():
    raw = (b"REGISTER sip:reg SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\n"
           b"Via: SIP/2.0/UDP c;branch=z9hG4bK3\r\n"
           b"From: <sip:x@y>;tag=9\r\nTo: <sip:x@y>\r\nCall-ID: cid\r\nCSeq: 2 REGISTER\r\n"
           b'Contact: "Doe, J" <sip:j@h1>;q=0.5, <sip:j@h2;transport=tcp>\r\n'
           b"Route: <sip:p1;lr>,<sip:p2;lr>\r\nRecord-Route: <sip:rr1;lr>\r\n"
           b"WWW-Authenticate: Digest realm=\"a\", nonce=\"b\"\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(raw)
    assert [v.host for v in msg.vias] == ["a", "b", "c"]
    assert msg.headers.get("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert [c.uri.host for c in msg.contacts] == ["h1", "h2"]
    assert msg.contacts[0].display_name == "Doe, J"
    assert msg.headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    # not a list header: commas stay
    assert msg.headers.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']


def test_star_contact():
    raw = (b"REGISTER sip:reg SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
           b"From: <sip:x@y>;tag=9\r\nTo: <sip:x@y>\r\nCall-ID: cid\r\nCSeq: 2 REGISTER\r\n"
           b"Contact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(raw)
    assert msg.contact is None and msg.headers.get("Contact") == "*"


# -- Content-Length and body

def _request(extra: bytes, body: bytes) -> bytes:
    return (b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n" + extra + b"\r\n" + body)


def test_content_length_truncates_datagram_padding():
    msg = parse_message(_request(b"Content-Length: 5\r\n", b"helloEXTRA GARBAGE"))
    assert msg.body == b"hello"


def test_no_content_length_takes_rest_of_datagram():
    assert parse_message(_request(b"", b"the whole rest")).body == b"the whole rest"


def test_content_length_zero_and_leading_zeros():
    assert parse_message(_request(b"Content-Length: 0\r\n", b"junk")).body == b""
    assert parse_message(_request(b"Content-Length: 003\r\n", b"abcdef")).body == b"abc"


@pytest.mark.parametrize("header,body,message", [
    (b"Content-Length: 500\r\n", b"twelve bytes", "Content-Length 500 exceeds body 12"),
    (b"Content-Length: abc\r\n", b"", "bad Content-Length: 'abc'"),
    (b"Content-Length: -1\r\n", b"", "bad Content-Length: '-1'"),
    (b"Content-Length: 1\r\nContent-Length: 1\r\n", b"x", "more than one Content-Length header"),
])
def test_bad_content_length(header, body, message):
    with pytest.raises(SipParseError) as info:
        parse_message(_request(header, body))
    assert str(info.value) == message
    assert info.value.request is not None and info.value.status == 400


def test_body_bytes_are_preserved():
    body = bytes(range(256))
    msg = parse_message(_request(f"Content-Length: {len(body)}\r\n".encode(), body))
    assert msg.body == body
    assert parse_message(msg.to_bytes()).body == body


def test_size_limit():
    data = _request(b"", b"x" * 2000)
    assert parse_message(data, max_size=len(data)).body == b"x" * 2000
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert info.value.status == 513 and "exceeds" in str(info.value)
    with pytest.raises(SipParseError):
        parse_message(b"x" * (MAX_MESSAGE_SIZE + 1))


def test_oversized_request_is_answerable_with_513():
    """Over the limit, a request whose header section fits is still read, so it gets
    its 513 (RFC 3261 21.5.14) instead of being dropped."""
    data = _request(b"", b"x" * 2000)
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=1000)
    assert info.value.status == 513 and info.value.request is not None
    assert info.value.request.method == "MESSAGE" and info.value.request.body == b""
    # A header section that itself passes the limit is not parsed: nothing to answer.
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=50)
    assert info.value.status == 513 and info.value.request is None


def test_content_length_beyond_the_limit_is_513_not_400():
    data = _request(f"Content-Length: {MAX_MESSAGE_SIZE}\r\n".encode(), b"short")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 513 and info.value.request is not None
    assert "exceeds the 65535-byte limit" in str(info.value)
    # Within the limit, a body shorter than declared stays a 400 (RFC 3261 18.3).
    with pytest.raises(SipParseError) as info:
        parse_message(_request(b"Content-Length: 5000\r\n", b"short"))
    assert info.value.status == 400


# -- keep-alives, line endings, encodings

def test_keepalives():
    for ping in (b"\r\n", b"\r\n\r\n", b"\n"):
        with pytest.raises(SipParseError) as info:
            parse_message(ping)
        assert info.value.keepalive
    msg = parse_message(b"\r\n\r\n" + INVITE)
    assert msg.method == "INVITE"


def test_bare_lf_messages_are_tolerated():
    msg = parse_message(INVITE.replace(b"\r\n", b"\n"))
    assert msg.cseq == (314159, "INVITE") and msg.body == b"0123456789"


def test_bad_utf8_is_refused_with_an_answerable_request():
    raw = _request(b"Subject: caf\xe9 \xff\xfe\r\nContent-Length: 0\r\n", b"")
    with pytest.raises(SipParseError) as info:
        parse_message(raw)
    assert str(info.value) == "invalid UTF-8 octet 0xe9 in Subject header"
    assert info.value.request is not None and info.value.status == 400


def test_utf8_header_values():
    raw = _request("Subject: Grüße 🎉\r\n".encode(), b"")
    assert parse_message(raw).headers.get("Subject") == "Grüße 🎉"


# -- errors

def _minimal(start: bytes, **replace: bytes) -> bytes:
    headers = {
        b"Via": b"SIP/2.0/UDP h;branch=z9hG4bK1", b"From": b"<sip:x@y>;tag=1", b"To": b"<sip:a@b>",
        b"Call-ID": b"c", b"CSeq": b"1 OPTIONS",
    }
    for key, value in replace.items():
        headers[key.replace("_", "-").encode()] = value
    lines = [start] + [k + b": " + v for k, v in headers.items() if v is not None]
    return b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("kwargs,fragment", [
    ({"CSeq": b"abc"}, "bad CSeq: 'abc'"),
    ({"CSeq": b"1"}, "bad CSeq: '1'"),
    ({"CSeq": b"2147483648 OPTIONS"}, "bad CSeq"),
    ({"CSeq": b"1 INVITE"}, "CSeq method 'INVITE' does not match request method 'OPTIONS'"),
    ({"Via": b"garbage"}, "bad Via"),
    ({"From": b"<sip:x@y"}, "bad From header"),
    ({"To": b'"x <sip:a@b>'}, "bad To header"),
    ({"Call_ID": b""}, "empty Call-ID"),
])
def test_errors_carry_a_best_effort_request(kwargs, fragment):
    with pytest.raises(SipParseError) as info:
        parse_message(_minimal(b"OPTIONS sip:a@b SIP/2.0", **kwargs))
    assert fragment in str(info.value)
    request = info.value.request
    assert isinstance(request, SipRequest) and request.method == "OPTIONS"
    response = make_response(request, 400, to_tag="zz")
    assert response.to_bytes().startswith(b"SIP/2.0 400 Bad Request\r\n")


def test_missing_required_headers_give_no_request():
    with pytest.raises(SipParseError) as info:
        parse_message(_minimal(b"OPTIONS sip:a@b SIP/2.0", From=None, CSeq=None))
    assert str(info.value) == "missing required header(s): From, CSeq"
    assert info.value.request is None


@pytest.mark.parametrize("start", [
    b"", b"HELLO", b"OPTIONS", b"OPTIONS sip:a@b HTTP/1.1", b"SIP/2.0", b"SIP/2.0 abc OK",
    b"SIP/2.0 99 Low", b"SIP/2.0 700 High", b"SIP/3.0 200 OK", b"OPT<IONS sip:a@b SIP/2.0", b"sip:a@b SIP/2.0 INVITE",
])
def test_bad_start_lines(start):
    with pytest.raises(SipParseError) as info:
        parse_message(_minimal(start))
    assert info.value.request is None


def test_unknown_version_is_505():
    with pytest.raises(SipParseError) as info:
        parse_message(_minimal(b"OPTIONS sip:a@b SIP/3.0"))
    assert info.value.status == 505 and info.value.request is not None


def test_malformed_header_line():
    raw = _minimal(b"OPTIONS sip:a@b SIP/2.0").replace(b"Call-ID: c\r\n", b"Call-ID: c\r\nno colon here\r\n")
    with pytest.raises(SipParseError) as info:
        parse_message(raw)
    assert "malformed header line" in str(info.value)
    assert info.value.request is not None


# -- Headers API

def test_headers_multimap():
    h = Headers([("Via", "SIP/2.0/UDP a"), ("X-Foo", "1")])
    h.add("via", "SIP/2.0/UDP b, SIP/2.0/UDP c")
    h.add("v", "SIP/2.0/UDP z", first=True)
    assert h.get_all("Via") == ["SIP/2.0/UDP z", "SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert h.get("VIA") == "SIP/2.0/UDP z"
    assert "x-foo" in h and "Route" not in h and 42 not in h
    h.set("x-foo", "2")
    assert h.get_all("X-Foo") == ["2"]
    h.remove("X-FOO")
    h.remove("Not-There")
    assert "X-Foo" not in h and h.get("X-Foo", "dflt") == "dflt"
    assert len(h) == 4
    copy = h.copy()
    copy.add("Via", "SIP/2.0/UDP w")
    assert len(h) == 4 and len(copy) == 5
    assert list(h)[0] == ("Via", "SIP/2.0/UDP z")


def test_headers_reject_injection():
    h = Headers()
    with pytest.raises(ValueError):
        h.add("Subject", "x\r\nVia: evil")
    with pytest.raises(ValueError):
        h.set("Bad Name", "x")


def test_views_follow_header_changes():
    msg = parse_message(INVITE)
    assert msg.to_tag is None
    msg.headers.set("To", "<sip:bob@biloxi.example.com>;tag=new")
    assert msg.to_tag == "new"
    msg.headers.add("Via", "SIP/2.0/UDP edge.example.com;branch=z9hG4bKedge", first=True)
    assert msg.top_via.host == "edge.example.com"


# -- building and serialising

def test_build_request_and_round_trip():
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={new_branch()};rport")
    h.add("Max-Forwards", "70")
    h.add("From", str(NameAddr("Alice", SipUri.parse("sip:alice@a.example"), {"tag": new_tag()})))
    h.add("To", "<sip:bob@b.example>")
    h.add("Call-ID", new_call_id("a.example"))
    h.add("CSeq", "1 INVITE")
    h.add("Allow", "INVITE, ACK")
    h.add("Allow", "BYE")
    h.add("Content-Length", "999")   # always recomputed
    req = SipRequest("INVITE", "sip:bob@b.example", h, b"body")
    wire = req.to_bytes()
    assert wire.startswith(b"INVITE sip:bob@b.example SIP/2.0\r\n")
    assert b"Allow: INVITE, ACK, BYE\r\n" in wire
    assert wire.endswith(b"Content-Length: 4\r\n\r\nbody")
    assert wire.count(b"Content-Length") == 1
    again = parse_message(wire)
    assert again.from_addr.display_name == "Alice"
    assert again.call_id.endswith("@a.example")
    assert again.to_bytes() == wire
    assert bytes(again) == wire


def test_parse_serialise_parse_is_stable():
    msg = parse_message(INVITE)
    wire = msg.to_bytes()
    again = parse_message(wire)
    assert again.to_bytes() == wire
    assert list(again.headers) == list(msg.headers)


def test_new_ids():
    assert new_branch().startswith("z9hG4bK") and len(new_branch()) == 23
    assert new_branch() != new_branch()
    assert len(new_tag()) == 12 and new_tag() != new_tag()
    assert "@" not in new_call_id() and new_call_id("h").endswith("@h")


def test_make_response_copies_the_right_headers():
    req = parse_message(INVITE)
    resp = make_response(req, 200, to_tag="as83kd9bs", body=b"v=0\r\n", content_type="application/sdp",
                         extra=[("Contact", "<sip:bob@192.0.2.4>"), ("Server", "voxlab")])
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=as83kd9bs"
    assert resp.headers.get("Call-ID") == req.call_id
    assert resp.headers.get("CSeq") == "314159 INVITE"
    assert "Max-Forwards" not in resp.headers and "Allow" not in resp.headers
    again = parse_message(resp.to_bytes())
    assert again.to_tag == "as83kd9bs" and again.body == b"v=0\r\n"
    assert again.content_type == "application/sdp" and again.contact.uri.host == "192.0.2.4"
    assert [name for name, _ in again.headers][:5] == ["Via", "Via", "From", "To", "Call-ID"]


def test_make_response_keeps_existing_to_tag_and_reason_table():
    req = parse_message(INVITE)
    req.headers.set("To", "<sip:bob@b>;tag=old")
    resp = make_response(req, 486, to_tag="new")
    assert resp.headers.get("To") == "<sip:bob@b>;tag=old"
    assert resp.reason == "Busy Here"
    assert make_response(req, 100).reason == "Trying"
    assert make_response(req, 488).reason == "Not Acceptable Here"
    assert make_response(req, 299).reason == ""
    assert make_response(req, 200, "Fine").reason == "Fine"


def test_response_copy_and_request_copy():
    req = parse_message(INVITE)
    dup = req.copy()
    dup.headers.set("CSeq", "314160 INVITE")
    dup.uri.params["lr"] = None
    assert req.cseq == (314159, "INVITE") and req.uri.params == {}
    resp = make_response(req, 180, to_tag="t")
    assert resp.copy().to_bytes() == resp.to_bytes()


def test_vias_constructed_from_objects():
    via = Via("SIP/2.0", "TCP", "192.0.2.9", 5070, {"branch": "z9hG4bKa", "rport": None})
    assert str(via) == "SIP/2.0/TCP 192.0.2.9:5070;branch=z9hG4bKa;rport"


def test_lenient_corners():
    # "SIP" in the version is case-insensitive in the ABNF
    msg = parse_message(_minimal(b"OPTIONS sip:a@b sip/2.0"))
    assert msg.version == "SIP/2.0"
    # a CR LF LF blank line still ends the header block
    raw = _minimal(b"OPTIONS sip:a@b SIP/2.0").replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 2\r\n\nhi")
    assert parse_message(raw).body == b"hi"
    # reads never raise on odd names; writes validate them
    h = Headers()
    assert h.get("Bad Name") is None and "Bad Name" not in h and h.get_all("x y") == []


def test_reason_phrase_cannot_inject_lines():
    req = parse_message(INVITE)
    wire = make_response(req, 400, "Bad\r\nVia: evil").to_bytes()
    assert wire.startswith(b"SIP/2.0 400 Bad  Via: evil\r\n")
    assert parse_message(wire).headers.get_all("Via") == req.headers.get_all("Via")


def test_headers_accept_objects():
    h = Headers()
    h.add("Via", Via("SIP/2.0", "UDP", "h", None, {"branch": "z9hG4bK1"}))
    h.add("To", NameAddr.parse("<sip:a@b>").with_tag("x"))
    h.set("Max-Forwards", 70)
    assert h.get("Via") == "SIP/2.0/UDP h;branch=z9hG4bK1"
    assert h.get("To") == "<sip:a@b>;tag=x" and h.get("Max-Forwards") == "70"
