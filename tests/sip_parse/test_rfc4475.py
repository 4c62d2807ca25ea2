"""RFC 4475 (SIP torture tests) against parse_message.

Every valid message must parse, and the fields the RFC draws attention to
must come out right.  Every invalid one has a documented outcome below: the
status a receiver should answer with (from the RFC's own text) and whether a
best-effort request is available to build that answer, or None when the RFC
lets receivers accept the message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voxlab.sip.message import SipParseError, SipRequest, SipResponse, make_response, parse_message
from voxlab.sip.sdp import SessionDescription

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rfc4475"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.sip").read_bytes()


VALID = [  # RFC 4475 3.1.1, plus the 3.3 messages that are well-formed
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason",
    "unkscm", "novelsc", "unksm2", "regescrt", "cparam01", "cparam02", "inv2543", "bcast",
    "invut", "regaut01", "bext01", "sdp01",
]

# name -> (expected SipParseError.status, best-effort request available?), or None
# when the message is accepted.  The reason for each, from the RFC:
INVALID: dict[str, tuple[int, bool] | None] = {
    # 3.1.2.1 extra ';' and ',' in Via and Contact: respond 400.
    "badinv01": (400, True),
    # 3.1.2.2 Content-Length larger than the datagram: respond 400.
    "clerr": (400, True),
    # 3.1.2.3 negative Content-Length: respond 400.
    "ncl": (400, True),
    # 3.1.2.4 CSeq >= 2**31 (and Max-Forwards > 255, huge Expires): 400 for the CSeq.
    "scalar02": (400, True),
    # 3.1.2.5 a response with out-of-range scalars: dropped (no request to answer).
    "scalarlg": (400, False),
    # 3.1.2.6 unterminated quoted display name: respond 400.
    "quotbal": (400, True),
    # 3.1.2.7 Request-URI in <>: respond 400.
    "ltgtruri": (400, True),
    # 3.1.2.8 LWS inside the Request-URI: respond 400.
    "lwsruri": (400, True),
    # 3.1.2.9 several SP between Request-Line elements: rejecting with 400 is reasonable.
    "lwsstart": (400, True),
    # 3.1.2.10 SP at the end of the Request-Line: rejecting with 400 is reasonable.
    "trws": (400, True),
    # 3.1.2.11 escaped headers in the Request-URI: rejecting with 400 is acceptable.
    "escruri": (400, True),
    # 3.1.2.12 non-GMT Date: only worth rejecting if the Date matters; voxlab never
    # interprets Date, so the message is accepted.
    "baddate": None,
    # 3.1.2.13 addr-spec Contact with '?' (must be a name-addr): respond 400.
    "regbadct": (400, True),
    # 3.1.2.14 spaces inside <addr-spec>: rejecting with 400 is reasonable.
    "badaspec": (400, True),
    # 3.1.2.15 unquoted display names with non-token characters: respond 400.
    "baddn": (400, True),
    # 3.1.2.16 SIP/7.0: respond 505 Version Not Supported.
    "badvers": (505, True),
    # 3.1.2.17 CSeq method differs from a known request method: respond 400.
    "mismatch01": (400, True),
    # 3.1.2.18 unknown method with a mismatching CSeq: 501 preferred over 400.
    "mismatch02": (501, True),
    # 3.1.2.19 response code > 699: dropped.
    "bigcode": (400, False),
    # 3.3 extras.  multi01: several Call-ID/CSeq/From/To: respond 400.
    "multi01": (400, True),
    # mcl01: two Content-Length values: respond 400.
    "mcl01": (400, True),
    # insuf: From, To, Call-ID missing: nothing to build a 400 from.
    "insuf": (400, False),
}


def test_fixture_set_is_complete():
    files = {p.stem for p in FIXTURES.glob("*.sip")}
    assert files == set(VALID) | set(INVALID)


def test_fixtures_are_crlf():
    for path in FIXTURES.glob("*.sip"):
        data = path.read_bytes()
        head = data.split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b""), path.name


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse(name):
    msg = parse_message(load(name))
    assert isinstance(msg, (SipRequest, SipResponse))
    # The views the transaction layer relies on are all available.
    assert msg.vias and msg.call_id and msg.cseq[0] >= 0
    msg.from_addr, msg.to_addr, msg.contacts
    # And what we serialise parses back to the same thing.
    again = parse_message(msg.to_bytes())
    assert again.call_id == msg.call_id
    assert again.cseq == msg.cseq
    assert again.body == msg.body
    assert [str(v) for v in again.vias] == [str(v) for v in msg.vias]
    def without_length(m):
        return [(k, v) for k, v in m.headers if k != "Content-Length"]
    assert without_length(again) == without_length(msg)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages(name):
    expected = INVALID[name]
    data = load(name)
    if expected is None:
        parse_message(data)
        return
    status, has_request = expected
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    err = info.value
    assert err.status == status
    assert not err.keepalive
    assert (err.request is not None) == has_request
    if has_request:
        response = make_response(err.request, err.status, to_tag="t1")
        wire = response.to_bytes()
        assert wire.startswith(f"SIP/2.0 {status} ".encode())
        assert response.headers.get_all("Via") == err.request.headers.get_all("Via")
        assert response.headers.get("Call-ID") == err.request.headers.get("Call-ID")


def test_wsinv_details():
    msg = parse_message(load("wsinv"))
    assert msg.method == "INVITE"
    assert msg.uri.user == "vivekg" and msg.uri.host == "chair-dnrc.example.com"
    assert msg.uri.params == {"unknownparam": None}
    assert msg.to_addr.display_name is None
    assert msg.to_addr.uri.user == "vivekg"
    assert msg.to_addr.tag == "1918181833n"
    # "J Rosenberg \\\"" unescapes to: J Rosenberg \"
    assert msg.from_addr.display_name == 'J Rosenberg \\"'
    assert msg.from_addr.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert all(v.protocol == "SIP/2.0" for v in msg.vias)
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    route = msg.headers.get_all("Route")
    assert route == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    contact = msg.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 150
    sdp = SessionDescription.parse(msg.body)
    assert sdp.connection == "192.0.2.4"


def test_intmeth_details():
    msg = parse_message(load("intmeth"))
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.method == method and msg.cseq == (139122385, method)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.uri.host == "example.com"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.to_addr.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_addr.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert msg.from_addr.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.max_forwards == 255
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_and_escnull_keep_escapes():
    msg = parse_message(load("esc01"))
    assert msg.uri.user == "sips%3Auser%40example.com" and msg.uri.host == "example.net"
    assert msg.to_addr.uri.user == "%75se%72"
    assert msg.from_addr.uri.user == "I%20have%20spaces"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"   # compact i:
    assert msg.content_type == "application/sdp"                 # compact C:
    assert msg.contact.uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    null = parse_message(load("escnull"))
    assert [c.uri.user for c in null.contacts] == ["%00", "%00%00"]
    assert null.to_addr.uri.user == "null-%00-null"


def test_esc02_percent_is_not_an_escape_in_tokens():
    msg = parse_message(load("esc02"))
    assert msg.method == "RE%47IST%45R"
    assert msg.to_addr.display_name == "%Z%45"
    assert [c.uri.host for c in msg.contacts] == ["host1.example.com", "host3.example.com"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_longreq_dblreq_semiuri():
    assert parse_message(load("lwsdisp")).from_addr.display_name == "caller"
    long = parse_message(load("longreq"))
    assert len(long.vias) == 34
    assert long.vias[0].host == "sip33.example.com" and long.vias[-1].received == "192.0.2.5"
    assert long.to_addr.uri.port == 6000
    assert "verylong" + "long" * 24 + "parameternamewithnovalue" in long.to_addr.uri.params
    assert long.call_id == "longreq.one" + "really" * 20 + "longcallid"
    dbl = parse_message(load("dblreq"))
    assert dbl.method == "REGISTER" and dbl.body == b""   # trailing INVITE is ignored
    semi = parse_message(load("semiuri"))
    assert semi.uri.user == "user;par=u%40example.net" and semi.uri.host == "example.com"
    assert semi.uri.params == {}
    assert semi.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]


def test_transports_mpart_responses():
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"
    mpart = parse_message(load("mpart01"))
    assert len(mpart.body) == 553 and mpart.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert mpart.top_via.has_rport and mpart.top_via.rport is None
    unreason = parse_message(load("unreason"))
    assert unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse_message(load("noreason"))
    assert noreason.status == 100 and noreason.reason == ""


def test_unknown_schemes_are_opaque():
    msg = parse_message(load("unkscm"))
    assert msg.uri.scheme == "nobodyknowsthisscheme"
    assert msg.uri.opaque == "totallyopaquecontent"
    assert str(msg.uri) == "nobodyknowsthisscheme:totallyopaquecontent"
    novel = parse_message(load("novelsc"))
    assert novel.uri.scheme == "soap.beep" and novel.uri.opaque == "//192.0.2.103:3002"
    unk = parse_message(load("unksm2"))
    assert unk.to_addr.uri.scheme == "isbn" and unk.to_addr.uri.opaque == "2983792873"
    assert str(unk.from_addr.uri) == "http://www.example.com"
    assert unk.contact.uri.scheme == "name"


def test_contact_params_addr_spec_vs_name_addr():
    # cparam01: in the addr-spec form, ;unknownparam is a header parameter...
    c1 = parse_message(load("cparam01")).contact
    assert c1.params == {"unknownparam": None} and c1.uri.params == {}
    # ...and inside <> it is a URI parameter.
    c2 = parse_message(load("cparam02")).contact
    assert c2.params == {} and c2.uri.params == {"unknownparam": None}
    reg = parse_message(load("regescrt"))
    assert reg.contact.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}


def test_inv2543_no_branch_no_content_length():
    msg = parse_message(load("inv2543"))
    assert msg.top_via.branch is None
    assert msg.max_forwards is None
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert msg.to_addr.params == {"user": "phone"}   # addr-spec: ;user=phone is a header param


def test_badvers_best_effort_request():
    with pytest.raises(SipParseError) as info:
        parse_message(load("badvers"))
    req = info.value.request
    assert req.method == "OPTIONS" and req.from_addr.display_name == "A. Bell"
    assert "version" in str(info.value)


def test_broken_request_uri_is_kept_for_the_400():
    with pytest.raises(SipParseError) as info:
        parse_message(load("ltgtruri"))
    assert str(info.value.request.uri) == "<sip:user@example.com>"
    with pytest.raises(SipParseError) as info:
        parse_message(load("lwsruri"))
    assert info.value.request.method == "INVITE"


def test_quotbal_response_gets_a_tag_even_though_to_is_broken():
    with pytest.raises(SipParseError) as info:
        parse_message(load("quotbal"))
    response = make_response(info.value.request, 400, to_tag="abc")
    assert response.headers.get("To").endswith(";tag=abc")


def test_error_messages_are_clear():
    messages = {}
    for name in ("clerr", "ncl", "scalar02", "mismatch01"):
        with pytest.raises(SipParseError) as info:
            parse_message(load(name))
        messages[name] = str(info.value)
    assert messages["clerr"] == "Content-Length 9999 exceeds body 154"
    assert messages["ncl"] == "bad Content-Length: '-999'"
    assert "bad CSeq" in messages["scalar02"]
    assert "does not match" in messages["mismatch01"]
