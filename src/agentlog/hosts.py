"""One spelling per host (pure): what the policy judges, the journal records and the proxy dials.

An agent can name one address many ways: 2130706433, 0x7f000001, 127.1,
0177.0.0.1, 127.000.000.001 and ::ffff:127.0.0.1 all reach 127.0.0.1, and
EVIL.com. reaches evil.com. `canonical_host` gives each host one spelling:

- names: percent-decoded, mapped by UTS #46 (case, full-width forms, the
  ideographic full stop and other dots) and encoded by IDNA 2008 to ASCII
  (`xn--` labels), one trailing dot dropped;
- IPv4: every literal inet_aton(3) accepts (1 to 4 parts, each decimal,
  octal or hex) in dotted decimal; a host whose last label is a number must
  be one (as in the WHATWG URL standard), anything else ending in a number is
  refused;
- IPv6: compressed; IPv4-mapped and IPv4-compatible forms as the IPv4 address.

What cannot be a host (an invalid IDNA label, a zone id, `a..b`) raises
HostError: the proxy refuses it rather than guess what a resolver would do.
"""

import functools
import ipaddress
import re
import urllib.parse

import idna

MAX_NAME = 253  # DNS: at most 253 characters without the trailing dot

_LABEL = re.compile(r"[a-z0-9_-]{1,63}")  # ASCII labels (underscores occur in the wild)
_PLAIN_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")  # a last label like this makes an IPv4 literal
_PART = {16: re.compile(r"[0-9a-f]+"), 8: re.compile(r"[0-7]+"), 10: re.compile(r"[0-9]+")}
_LOOPBACK_OF_UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class HostError(ValueError):
    """Not a host the proxy can judge or dial; the message says why."""


@functools.lru_cache(maxsize=8192)
def canonical_host(text: str) -> str:
    """The one spelling of the host `text` names (see the module docstring)."""
    if len(text) <= MAX_NAME and _PLAIN_NAME.fullmatch(text) and not _needs_work(text):
        return text  # the common case, already canonical
    host = _percent_decoded(text)
    if host.startswith("[") or ":" in host:
        return _ipv6(host)
    host = _mapped(host)
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise HostError("empty host name")
    if len(host) > MAX_NAME:
        raise HostError(f"host name longer than {MAX_NAME} characters")
    if _NUMBER.fullmatch(host.rpartition(".")[2]):
        return _ipv4(host)
    return ".".join(ascii_label(label) for label in host.split("."))


def ascii_label(label: str) -> str:
    """One label of a name as IDNA 2008 ASCII (no IP interpretation: a glob's labels)."""
    if not label:
        raise HostError("empty label (two dots in a row)")
    if label.isascii():
        label = label.lower()
        if label.startswith("xn--"):
            return _checked_alabel(label)
        if not _LABEL.fullmatch(label):
            raise HostError(f"{label!r} is not a valid host name label")
        return label
    try:
        return idna.alabel(idna.uts46_remap(label, std3_rules=False)).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as e:
        raise HostError(f"{label!r} is not a valid IDNA label ({e})") from None


def unicode_host(host: str) -> str:
    """A canonical host with its `xn--` labels shown as Unicode (for people, not policy)."""
    if ":" in host or "xn--" not in host:
        return host
    return ".".join(_unicode_label(label) for label in host.split("."))


def host_forms(text: str) -> tuple[str, str | None]:
    """What a record stores: the canonical ASCII host, and its Unicode form where it
    differs. A host that has no canonical form is stored as it was given."""
    try:
        host = canonical_host(text)
    except HostError:
        return text, None
    shown = unicode_host(host)
    return host, (shown if shown != host else None)


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a canonical host is, or None for a name."""
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def reached_by(host: str) -> tuple[str, ...]:
    """The addresses a connect to canonical `host` reaches: itself, and for the
    unspecified address (0.0.0.0, ::), which Linux connects to this machine, loopback."""
    loopback = _LOOPBACK_OF_UNSPECIFIED.get(host)
    return (host,) if loopback is None else (host, loopback)


# -- the steps ---------------------------------------------------------------


def _needs_work(text: str) -> bool:
    """A plain lower-case name that is still not canonical: IDNA or a number at the end."""
    return "xn--" in text or bool(_NUMBER.fullmatch(text.rpartition(".")[2]))


def _percent_decoded(text: str) -> str:
    if "%" not in text:
        return text
    try:
        return urllib.parse.unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise HostError("percent-encoding that is not UTF-8") from None


def _mapped(text: str) -> str:
    """UTS #46 mapping of the whole name: lower case, full-width forms, other dots."""
    if text.isascii():
        return text.lower()
    try:
        return idna.uts46_remap(text, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError) as e:
        raise HostError(f"not a valid internationalised host name ({e})") from None


def _unicode_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return idna.ulabel(label)
    except (idna.IDNAError, UnicodeError, ValueError):
        return label


def _checked_alabel(label: str) -> str:
    """An `xn--` label only passes if it decodes to valid IDNA 2008 and back to itself."""
    try:
        again = idna.alabel(idna.ulabel(label)).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as e:
        raise HostError(f"{label!r} is not a valid IDNA label ({e})") from None
    if again != label:
        raise HostError(f"{label!r} is not the canonical spelling of its IDNA label")
    return label


def _ipv4(host: str) -> str:
    """inet_aton(3)'s forms: a.b.c.d, a.b.c (c: 16 bits), a.b (b: 24 bits), a (32 bits)."""
    parts = host.split(".")
    if len(parts) > 4:
        raise HostError(f"{host!r} ends in a number but is not an IPv4 address")
    values = [_ipv4_part(part, host) for part in parts]
    *head, last = values
    if any(value > 0xFF for value in head) or last >= 1 << (8 * (5 - len(values))):
        raise HostError(f"{host!r} is not an IPv4 address (a part is out of range)")
    number = last
    for i, value in enumerate(head):
        number |= value << (24 - 8 * i)
    return str(ipaddress.IPv4Address(number))


def _ipv4_part(part: str, host: str) -> int:
    if part.startswith("0x"):
        base, digits = 16, part[2:]
    elif len(part) > 1 and part.startswith("0"):
        base, digits = 8, part[1:]
    else:
        base, digits = 10, part
    if not _PART[base].fullmatch(digits):
        raise HostError(f"{host!r} ends in a number but is not an IPv4 address")
    return int(digits.lstrip("0") or "0", base)


def _ipv6(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise HostError(f"{host!r}: unbalanced brackets")
        host = host[1:-1]
    if "%" in host:
        raise HostError("IPv6 zone ids are not accepted")
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        raise HostError(f"{host!r} is not an IPv6 address") from None
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, but not :: or ::1
        return str(ipaddress.IPv4Address(int(address)))
    return address.compressed
