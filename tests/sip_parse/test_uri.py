"""SipUri, NameAddr, Via and split_header_values."""

from __future__ import annotations

import pytest

from voxlab.sip.uri import NameAddr, SipParseError, SipUri, Via, split_header_values


# -- SipUri

def test_plain_sip_uri():
    uri = SipUri.parse("sip:alice@example.com")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip", "alice", None, "example.com", None)
    assert uri.params == {} and uri.headers == {}
    assert str(uri) == "sip:alice@example.com"
    assert uri.host_port() == ("example.com", 5060)


def test_uri_with_everything():
    text = "sips:bob:secret@10.0.0.5:5061;transport=TCP;lr;maddr=239.1.1.1?Subject=hi&Priority=urgent"
    uri = SipUri.parse(text)
    assert uri.scheme == "sips" and uri.user == "bob" and uri.password == "secret"
    assert uri.host == "10.0.0.5" and uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "239.1.1.1"}
    assert uri.transport == "tcp"
    assert uri.headers == {"Subject": "hi", "Priority": "urgent"}
    assert str(uri) == text
    assert SipUri.parse(str(uri)) == uri


def test_param_names_are_case_insensitive():
    uri = SipUri.parse("SIP:Alice@Example.COM;Transport=udp;LR")
    assert uri.scheme == "sip"
    assert uri.params == {"transport": "udp", "lr": None}
    assert "lr" in uri.params


@pytest.mark.parametrize("text,host,port", [
    ("sip:[::1]", "[::1]", None),
    ("sip:alice@[2001:db8::10]:5070;transport=udp", "[2001:db8::10]", 5070),
    ("sip:[2001:db8::9:1]:6050", "[2001:db8::9:1]", 6050),
])
def test_ipv6_hosts_keep_brackets(text, host, port):
    uri = SipUri.parse(text)
    assert uri.host == host and uri.port == port
    assert uri.host_port(5999) == (host[1:-1], port or 5999)
    assert str(uri) == text


def test_host_only_and_headers_with_at_sign():
    uri = SipUri.parse("sip:example.com?Route=%3Csip:a@b%3E")
    assert uri.user is None and uri.host == "example.com"
    assert uri.headers == {"Route": "%3Csip:a@b%3E"}


def test_tel_and_opaque_uris():
    tel = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert tel.scheme == "tel" and tel.user == "+1-201-555-0123" and tel.host == ""
    assert tel.params == {"phone-context": "example.com"}
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"
    urn = SipUri.parse("urn:service:sos")
    assert urn.scheme == "urn" and urn.opaque == "service:sos" and str(urn) == "urn:service:sos"


@pytest.mark.parametrize("bad", [
    "", "alice@example.com", "sip:", "sip:alice@", "sip:alice@exa mple.com", "sip:a@b:99999",
    "sip:a@b:", "sip:a@b;;lr", "sip:a@b;x=y z", "<sip:a@b>", "sip:a@b>", "1sip:x",
    "sip:a@[::1", "sip:a b@c",
])
def test_bad_uris(bad):
    with pytest.raises(SipParseError):
        SipUri.parse(bad)


def test_uri_copy_is_independent():
    uri = SipUri.parse("sip:a@b;lr")
    other = uri.copy()
    other.params["transport"] = "tcp"
    assert uri.params == {"lr": None}


# -- NameAddr

def test_name_addr_forms():
    na = NameAddr.parse('"Alice Smith" <sip:alice@example.com>;tag=1234')
    assert na.display_name == "Alice Smith" and na.uri.user == "alice" and na.tag == "1234"
    assert str(na) == '"Alice Smith" <sip:alice@example.com>;tag=1234'
    bare = NameAddr.parse("<sip:bob@example.com;transport=tcp>;expires=60")
    assert bare.display_name is None and bare.uri.params == {"transport": "tcp"}
    assert bare.params == {"expires": "60"}
    tokens = NameAddr.parse("Bob  Jones <sip:bob@example.com>")
    assert tokens.display_name == "Bob  Jones"


def test_addr_spec_params_are_header_params():
    na = NameAddr.parse("sip:alice@example.com;tag=abc;transport=tcp")
    assert na.uri.params == {}
    assert na.params == {"tag": "abc", "transport": "tcp"}
    assert na.tag == "abc"
    # serialised in name-addr form, which keeps the meaning
    assert str(na) == "<sip:alice@example.com>;tag=abc;transport=tcp"
    assert NameAddr.parse(str(na)) == na


def test_quoted_display_names_with_escapes():
    na = NameAddr.parse(r'"Say \"hi\" \\ bye" <sip:a@b>')
    assert na.display_name == 'Say "hi" \\ bye'
    assert NameAddr.parse(str(na)).display_name == na.display_name
    odd = NameAddr("a\x07b\r\nc", SipUri.parse("sip:x@y"))
    assert "\r" not in str(odd) and "\n" not in str(odd)
    assert NameAddr.parse(str(odd)).display_name == "a\x07b  c"


def test_lws_around_params_and_quoted_param_values():
    na = NameAddr.parse('<sip:a@b> ;  tag =  x1 ;  q = 0.5;note="a;b, c"')
    assert na.params == {"tag": "x1", "q": "0.5", "note": '"a;b, c"'}


def test_with_tag_copies():
    na = NameAddr.parse("<sip:bob@example.com>")
    tagged = na.with_tag("zz9")
    assert tagged.tag == "zz9" and na.tag is None
    assert str(tagged) == "<sip:bob@example.com>;tag=zz9"
    tagged.uri.params["lr"] = None
    assert na.uri.params == {}


@pytest.mark.parametrize("bad", [
    "", '"unterminated <sip:a@b>', "Bell, Alexander <sip:a@b>", "< sip:a@b >", "<sip:a@b",
    "<sip:a@b>;;", "<sip:a@b> junk", "sip:a@b?x=y", '"x" sip:a@b',
    "<sip:a@b>;tag=", "<sip:a@b>;=x",
])
def test_bad_name_addrs(bad):
    with pytest.raises(SipParseError):
        NameAddr.parse(bad)


def test_flag_param_without_value_is_fine():
    assert NameAddr.parse("<sip:a@b>;tag").params == {"tag": None}


# -- Via

def test_via_parse_and_serialise():
    via = Via.parse("SIP/2.0/udp 192.0.2.1:5062;branch=z9hG4bK776asdhds;rport;received=10.1.1.1")
    assert via.protocol == "SIP/2.0" and via.transport == "UDP"
    assert via.host == "192.0.2.1" and via.port == 5062
    assert via.branch == "z9hG4bK776asdhds"
    assert via.has_rport and via.rport is None and via.received == "10.1.1.1"
    assert str(via) == "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776asdhds;rport;received=10.1.1.1"


def test_via_rport_filled_and_ipv6():
    via = Via.parse("SIP/2.0/TCP [2001:db8::1]:5060;rport=40000;received=2001:db8::2;branch=z9hG4bKx")
    assert via.host == "[2001:db8::1]" and via.rport == 40000
    assert via.received == "2001:db8::2"
    assert via.host_port() == ("2001:db8::1", 5060)
    assert Via.parse(str(via)) == via


def test_via_with_lws():
    via = Via.parse("SIP  /   2.0 / UDP   host.example.com : 5070 ; branch = z9hG4bKq")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "host.example.com", 5070,
                                                              "z9hG4bKq")


@pytest.mark.parametrize("bad", [
    "", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host;;", "SIP/2.0/UDP host:99999",
    "SIP/2.0/UDP host junk", ";", "SIP/2.0/UDP ho st",
])
def test_bad_vias(bad):
    with pytest.raises(SipParseError):
        Via.parse(bad)


# -- split_header_values

@pytest.mark.parametrize("value,expected", [
    ("", []),
    ("a", ["a"]),
    ("INVITE, ACK ,BYE", ["INVITE", "ACK", "BYE"]),
    ('"Doe, John" <sip:j@d>;q=1, <sip:x@y;a=b,c>', ['"Doe, John" <sip:j@d>;q=1', "<sip:x@y;a=b,c>"]),
    ('"a \\", b" <sip:a@b>, sip:c@d', ['"a \\", b" <sip:a@b>', "sip:c@d"]),
    ("a,,b, ,", ["a", "b"]),
    ('"unterminated, x', ['"unterminated, x']),
    ("<sip:a@b, c", ["<sip:a@b, c"]),
])
def test_split_header_values(value, expected):
    assert split_header_values(value) == expected
