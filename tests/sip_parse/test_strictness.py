"""Parser strictness (issue 9): input RFC 3261 forbids is refused with a 400 whose reason
names the problem, and the refusal still carries the request so the 400 can be sent."""

from __future__ import annotations

import pytest

from voxlab.sip.message import SipParseError, make_response, new_tag, parse_message

HEAD = (b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-strict\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:a@127.0.0.1:5070>;tag=1\r\n"
        b"To: <sip:echo@127.0.0.1>\r\n"
        b"Call-ID: strict@127.0.0.1\r\n"
        b"CSeq: 1 OPTIONS\r\n")


def refused(data: bytes) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    exc = info.value
    assert exc.status == 400, (exc, exc.status)
    assert exc.request is not None, f"no request to answer: {exc}"
    response = make_response(exc.request, 400, f"Bad Request ({exc})", to_tag=new_tag())
    parse_message(response.to_bytes())          # the 400 itself is well-formed
    return exc


def test_request_line_without_sip_version():
    exc = refused(b"OPTIONS sip:echo@127.0.0.1\r\n" + HEAD + b"Content-Length: 0\r\n\r\n")
    assert "no SIP-Version" in str(exc)


@pytest.mark.parametrize("header", [b"Subject: a\x00b", b"X-Note: \x00"])
def test_raw_nul_in_a_header(header):
    exc = refused(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n" + HEAD + header + b"\r\n"
                  b"Content-Length: 0\r\n\r\n")
    assert "raw NUL" in str(exc) and header.split(b":")[0].decode() in str(exc)


def test_nul_escaped_as_a_quoted_pair_is_legal():
    msg = parse_message(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n"
                        + HEAD.replace(b"To: <sip", b'To: "N\\\x00L" <sip')
                        + b"Content-Length: 0\r\n\r\n")
    assert msg.to_addr.display_name == "N\x00L"


@pytest.mark.parametrize("octets", [b"\xff", b"\xc3(", b"\xed\xa0\x80"], ids=["ff", "truncated", "surrogate"])
def test_invalid_utf8_in_a_header(octets):
    exc = refused(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n" + HEAD + b"Subject: caf" + octets
                  + b"\r\nContent-Length: 0\r\n\r\n")
    assert "invalid UTF-8" in str(exc) and "Subject" in str(exc)


def test_valid_utf8_is_kept():
    msg = parse_message(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n" + HEAD
                        + "Subject: café 大停電\r\n".encode() + b"Content-Length: 0\r\n\r\n")
    assert msg.headers.get("Subject") == "café 大停電"


@pytest.mark.parametrize("value", [b"seventy", b"-1", b"7O", b"256", b""])
def test_bad_max_forwards(value):
    exc = refused(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n"
                  + HEAD.replace(b"Max-Forwards: 70", b"Max-Forwards: " + value)
                  + b"Content-Length: 0\r\n\r\n")
    assert "Max-Forwards" in str(exc)


@pytest.mark.parametrize("value", [b"18446744073709551616", b"99999999999999999999999999"])
def test_content_length_beyond_64_bits(value):
    exc = refused(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n" + HEAD + b"Content-Length: " + value
                  + b"\r\n\r\n")
    assert "64 bits" in str(exc)


def test_content_length_at_the_64_bit_edge_is_still_too_large_not_malformed():
    with pytest.raises(SipParseError) as info:
        parse_message(b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n" + HEAD
                      + b"Content-Length: 18446744073709551615\r\n\r\n")
    assert info.value.status == 513
