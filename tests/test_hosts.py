"""canonical_host: every spelling of a host becomes one (pure, property-tested)."""

import contextlib
import ipaddress
import socket

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from agentlog.hosts import (
    HostError,
    canonical_host,
    host_forms,
    ip_address,
    reached_by,
    unicode_host,
)
from tests.samples import LOOPBACK_SPELLINGS, ipv4_spellings


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_one_address(spelling):
    expected = "87.0.0.1" if spelling.startswith("000000127") else "127.0.0.1"
    assert canonical_host(spelling) == expected


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("evil.com.", "evil.com"),
        ("EVIL.Com", "evil.com"),
        ("EVIL.COM.", "evil.com"),
        ("evil。com", "evil.com"),
        ("ＥＶＩＬ.com", "evil.com"),
        ("ev%69l.com", "evil.com"),
        ("g\u043e\u043egle.com", "xn--ggle-55da.com"),  # Cyrillic о: a homograph
        ("XN--GGLE-55DA.COM", "xn--ggle-55da.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008: not fass.de as IDNA 2003 would have it
        ("a_b.example", "a_b.example"),
        ("localhost", "localhost"),
        ("[::1]", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("[2001:DB8::0001]", "2001:db8::1"),
        ("169.254.169.254", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("1.2.3.0x4", "1.2.3.4"),
        ("1.0xg", "1.0xg"),  # not a number: a name
        ("123.example", "123.example"),
    ],
)
def test_names_and_addresses(spelling, canonical):
    assert canonical_host(spelling) == canonical


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "a..b",
        "evil.com..",
        ".evil.com",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.256.0.0",
        "4294967296",
        "08.0.0.1",
        "0x",
        "0xg.1",
        "foo.123",
        "[1.2.3.4]",
        "[::1",
        "fe80::1%eth0",
        "[fe80::1%25eth0]",
        "::ffff:127.0.0.1:80",
        "a b.com",
        "a/b.com",
        "evil.com:abc",
        "\u2603.com",  # IDNA 2008 refuses symbols
        "xn--zz.com",  # not punycode
        "xn--n3h.com",  # punycode for the snowman: IDNA 2003 took it, IDNA 2008 does not
        "%ff.com",
        "a\x00b.com",
        "\udcff.com",  # a byte that was not UTF-8, as mitmproxy keeps it
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
    ],
)
def test_garbage_is_refused(garbage):
    with pytest.raises(HostError):
        canonical_host(garbage)


def test_unspecified_addresses_reach_loopback():
    assert canonical_host("0") == "0.0.0.0" and reached_by("0.0.0.0") == ("0.0.0.0", "127.0.0.1")
    assert canonical_host("[::]") == "::" and reached_by("::") == ("::", "::1")
    assert reached_by("10.0.0.1") == ("10.0.0.1",)


def test_records_keep_ascii_and_show_unicode_beside_it():
    assert host_forms("g\u043e\u043egle.com") == ("xn--ggle-55da.com", "g\u043e\u043egle.com")
    assert host_forms("xn--ggle-55da.com") == ("xn--ggle-55da.com", "g\u043e\u043egle.com")
    assert host_forms("Example.COM.") == ("example.com", None)
    assert host_forms("a b") == ("a b", None)  # no canonical form: kept as given
    assert unicode_host("127.0.0.1") == "127.0.0.1"


# -- properties ---------------------------------------------------------------


@given(ipv4_spellings())
@example((0x7F000001, "0x7f000001"))
@example((0x7F000001, "127.1"))
def test_every_ipv4_spelling_is_one_address(spelled):
    number, spelling = spelled
    address = str(ipaddress.IPv4Address(number))
    assert canonical_host(spelling) == address
    assert canonical_host(f"::ffff:{address}") == address
    assert canonical_host(f"[::ffff:{number >> 16:x}:{number & 0xFFFF:x}]") == address


@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=40))
def test_numeric_hosts_are_exactly_what_inet_aton_accepts(text):
    last = text.rpartition(".")[2]
    assume(last[:1].isdigit())  # ends in a number, no trailing dot: inet_aton's territory
    try:
        dialled = socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        dialled = None
    try:
        canonical = canonical_host(text)
    except HostError:
        canonical = None
    if dialled is not None:
        assert canonical == dialled
    elif canonical is not None:  # only a name: the last label is not a number
        assert ip_address(canonical) is None


hostish = st.text(
    alphabet=st.sampled_from(list("abcxyz019.-_:[]%AZ") + ["\u043e", "ß", "。", "\u200d", "０"]),
    max_size=30,
)


@given(st.one_of(st.text(max_size=40), hostish))
def test_never_raises_anything_but_host_error_and_is_idempotent(text):
    try:
        host = canonical_host(text)
    except HostError:
        return
    assert canonical_host(host) == host
    assert host.isascii() and host == host.lower() and not host.endswith(".")
    assert canonical_host(unicode_host(host)) == host


@given(st.binary(max_size=30))
def test_raw_header_bytes_never_crash(raw):
    with contextlib.suppress(HostError):
        canonical_host(raw.decode("utf-8", "surrogateescape"))
