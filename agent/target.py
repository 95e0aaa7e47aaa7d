"""Parse what a user types (`host[:port]` or `scheme://host[:port]`) into a Target, strictly.

Targets also arrive from the network (`/probe?target=`), so the parser is the security boundary of
the allow-list: one host, no userinfo, no path, brackets only around a whole IPv6 literal, ASCII
digits in ports, IDNA-normalised lower-case names with at most one trailing dot, and nothing a
resolver could read as an address in disguise (`127.1`, `0x7f.1`). The allow-list (`AllowPattern`)
then matches the parsed scheme, host and port, never the raw string.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from dataclasses import dataclass, field

import idna
from relaywatch import protocols
from relaywatch.protocols import Protocol, Scheme

MAX_TARGET = 300  # characters: a host name is at most 253
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_PORT = re.compile(r"^[0-9]{1,5}\Z")  # ASCII only: "²5".isdigit() is True
_NUMERIC_TLD = re.compile(r"^(0x[0-9a-f]*|[0-9]+)\Z")  # inet_aton reads "127.1" and "0x7f.1" as addresses
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f/?#@\\%]")  # whitespace, controls, path, query, userinfo, zone ids
GATEWAY_PORT = 25
# names that never go to DNS (RFC 6761): the lab's relays and anything local
_SPECIAL_TLDS = ("localhost", "invalid")


class TargetError(ValueError):
    """A target string that cannot be probed."""


@dataclass(frozen=True, slots=True)
class Target:
    raw: str = field(compare=False)  # as the user typed it: the name of its series and reports
    scheme: str
    host: str  # normalised: lower-case A-labels without a trailing dot, or a compressed IP literal
    port: int

    @property
    def spec(self) -> Scheme:
        return protocols.BY_NAME[self.scheme]

    @property
    def protocol(self) -> str:
        p = self.spec.protocol
        return p.name if p is not None else self.scheme

    @property
    def mail_protocol(self) -> Protocol | None:
        return self.spec.protocol

    @property
    def starttls(self) -> bool:
        return self.spec.starttls

    @property
    def host_is_ip(self) -> bool:
        return _ip(self.host) is not None

    @property
    def gateway(self) -> bool:
        """Probed with DNS evidence (probe/gateway.py): `mx:` targets, and plain host targets on the SMTP
        relay port, where DANE applies (RFC 7672 is about MX delivery)."""
        if self.scheme == protocols.MX_SCHEME:
            return True
        return (
            self.mail_protocol is not None
            and self.mail_protocol.name == "smtp"
            and self.starttls
            and self.port == GATEWAY_PORT
            and not self.host_is_ip
            and self.host.rsplit(".", 1)[-1] not in _SPECIAL_TLDS
        )

    def to_dict(self) -> dict[str, object]:
        return {"raw": self.raw, "scheme": self.scheme, "host": self.host, "port": self.port}


def parse_target(text: str) -> Target:
    raw = text.strip()
    if not raw:
        raise TargetError("empty target")
    if len(raw) > MAX_TARGET:
        raise TargetError(f"target longer than {MAX_TARGET} characters")
    shown = repr(raw) if len(raw) <= 80 else repr(raw[:77] + "...")
    if raw[:3].lower() == f"{protocols.MX_SCHEME}:" and not raw[3:].startswith("//"):
        return _mx_target(raw, shown)
    scheme, authority = _split_scheme(raw, shown)
    host, port_text = _split_authority(authority, shown, bracket_required=scheme is not None)
    port = _port(port_text, shown) if port_text is not None else None
    if scheme is None:
        spec = protocols.BY_PORT.get(port, protocols.FALLBACK_SCHEME) if port else protocols.DEFAULT_SCHEME
    else:
        spec = protocols.BY_NAME[scheme]
    return Target(raw=raw, scheme=spec.name, host=normalise_host(host, shown), port=port or spec.default_port)


def _mx_target(raw: str, shown: str) -> Target:
    """`mx:domain`: a mail domain, never an address or a port (its MX hosts say where, on port 25)."""
    domain = raw[3:]
    if not domain or _FORBIDDEN.search(domain) or ":" in domain or "[" in domain:
        raise TargetError(f"{shown}: mx: takes a mail domain, nothing more (mx:contoso.com)")
    host = normalise_host(domain, shown)
    if _ip(host) is not None:
        raise TargetError(f"{shown}: mx: takes a mail domain, not an address")
    spec = protocols.BY_NAME[protocols.MX_SCHEME]
    return Target(raw=raw, scheme=spec.name, host=host, port=spec.default_port)


def _split_scheme(raw: str, shown: str) -> tuple[str | None, str]:
    if "://" not in raw:
        if _FORBIDDEN.search(raw):
            raise TargetError(f"{shown}: a target is host[:port] or scheme://host[:port], nothing more")
        return None, raw
    scheme, _, rest = raw.partition("://")
    scheme = scheme.lower()
    if scheme not in protocols.BY_NAME:
        names = ", ".join(s.name for s in protocols.SCHEMES)
        raise TargetError(f"{shown}: unknown scheme {scheme[:20]!r} (one of {names})")
    rest = rest[:-1] if rest.endswith("/") else rest
    if not rest or _FORBIDDEN.search(rest):
        raise TargetError(f"{shown}: a target is scheme://host[:port], nothing more")
    return scheme, rest


def _split_authority(text: str, shown: str, bracket_required: bool) -> tuple[str, str | None]:
    """host and port text; brackets only around a whole IPv6 literal."""
    if text.startswith("["):
        inside, close, after = text[1:].partition("]")
        if not close or "[" in inside or "]" in after:
            raise TargetError(f"{shown}: unbalanced brackets")
        if after and not after.startswith(":"):
            raise TargetError(f"{shown}: expected [IPv6 address]:port")
        if not isinstance(_ip(inside), ipaddress.IPv6Address):
            raise TargetError(f"{shown}: brackets hold an IPv6 address, not {inside[:60]!r}")
        return inside, after[1:] if after else None
    if "[" in text or "]" in text:
        raise TargetError(f"{shown}: brackets belong around a whole IPv6 address")
    if text.count(":") > 1:
        if bracket_required or _ip(text) is None:
            raise TargetError(f"{shown}: write an IPv6 address in brackets, [address]:port")
        return text, None
    host, sep, port = text.partition(":")
    return host, port if sep else None


def _port(text: str, shown: str) -> int:
    if not _PORT.match(text):
        raise TargetError(f"{shown}: port {text[:20]!r} is not a number")
    port = int(text)
    if not 0 < port < 65536:
        raise TargetError(f"{shown}: port {port} out of range")
    return port


def normalise_host(host: str, shown: str = "") -> str:
    """An IP literal in its compressed form, or a name as lower-case A-labels without a trailing dot."""
    shown = shown or repr(host[:80])
    ip = _ip(host)
    if ip is not None:
        return str(ip)
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        raise TargetError(f"{shown}: {host[:60]!r} is not a valid host name or address")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii") if not name.isascii() else name.lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise TargetError(f"{shown}: {host[:60]!r} is not a valid host name ({exc})") from None
    labels = ascii_name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise TargetError(f"{shown}: {host[:60]!r} is not a valid host name or address")
    if _NUMERIC_TLD.match(labels[-1]):
        raise TargetError(f"{shown}: {host[:60]!r} looks like an address but is not a valid one")
    return ascii_name


@functools.lru_cache(maxsize=256)  # asked of every target at every probe; the objects are immutable
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AllowPattern:
    """One `probe_allow` entry: `[scheme://]host[:port]`.

    host: a name (`relay.example.com`), a wildcard over whole labels (`*.mail.protection.outlook.com`
    matches names below it, never the suffix itself or a look-alike), an IP address, a network
    (`127.0.0.0/8`) or an IPv4 pattern (`127.0.0.*`). Names never match IP literals, and IP patterns
    never match names. port: a number or `*`; none means the scheme's default port.
    """

    text: str
    scheme: str | None
    host: str
    port: int | None  # None: any port (`*`)
    default_port: bool  # no port given: the target's scheme's default port

    def matches(self, target: Target) -> bool:
        if self.scheme is not None and target.scheme != self.scheme:
            return False
        if target.scheme == protocols.MX_SCHEME and self.scheme != protocols.MX_SCHEME:
            return False  # an mx: target probes whatever hosts DNS names: only an mx: pattern admits it
        if self.default_port and target.port != target.spec.default_port:
            return False
        if self.port is not None and target.port != self.port:
            return False
        return self._host_matches(target.host)

    def _host_matches(self, host: str) -> bool:
        ip = _ip(host)
        if ip is not None:
            return _ip_pattern_matches(self.host, _unmapped(ip))
        if _is_ip_pattern(self.host):
            return False
        if self.host.startswith("*."):
            suffix = self.host[1:]  # ".mail.protection.outlook.com"
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host


def parse_allow_pattern(text: str) -> AllowPattern:
    raw = text.strip()
    scheme: str | None = None
    rest = raw
    if raw[:3].lower() == f"{protocols.MX_SCHEME}:" and not raw[3:].startswith("//"):
        raw = f"{protocols.MX_SCHEME}://{raw[3:]}"  # mx:*.contoso.com, the domain pattern
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
        scheme = scheme.lower()
        if scheme not in protocols.BY_NAME:
            raise TargetError(f"{raw!r}: unknown scheme {scheme!r}")
    port: int | None = None
    default_port = False
    if rest.startswith("["):
        inside, close, after = rest[1:].partition("]")
        host, port_text = inside, (after[1:] if after.startswith(":") else None)
        if not close or (after and not after.startswith(":")):
            raise TargetError(f"{raw!r}: expected [address]:port")
    elif rest.count(":") > 1:
        host, port_text = rest, None
    else:
        host, sep, port_text_or = rest.partition(":")
        port_text = port_text_or if sep else None
    if port_text is None:
        default_port = True
    elif port_text != "*":
        port = _port(port_text, repr(raw))
    host = host.lower()
    if _is_ip_pattern(host):
        _check_ip_pattern(host, raw)
    elif host.startswith("*."):
        host = "*." + normalise_host(host[2:], repr(raw))
    else:
        host = normalise_host(host, repr(raw))
    return AllowPattern(raw, scheme, host, port, default_port)


def _is_ip_pattern(host: str) -> bool:
    return ":" in host or bool(re.fullmatch(r"[0-9.*/]+", host))


def _check_ip_pattern(host: str, raw: str) -> None:
    try:
        if "/" in host:
            ipaddress.ip_network(host, strict=False)
        elif "*" in host:
            if not re.fullmatch(r"([0-9]{1,3}|\*)(\.([0-9]{1,3}|\*)){3}", host):
                raise ValueError(host)
        else:
            ipaddress.ip_address(host)
    except ValueError:
        raise TargetError(f"{raw!r}: {host!r} is not an address, network or IPv4 pattern") from None


def _unmapped(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """::ffff:127.0.0.1 reaches 127.0.0.1: judge it as that."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _ip_pattern_matches(pattern: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not _is_ip_pattern(pattern):
        return False
    if "/" in pattern:
        net = ipaddress.ip_network(pattern, strict=False)
        return ip.version == net.version and ip in net
    if "*" in pattern:
        return ip.version == 4 and fnmatch.fnmatchcase(str(ip), pattern)
    return _unmapped(ipaddress.ip_address(pattern)) == ip
