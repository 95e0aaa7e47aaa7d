"""Parse what a user types (`host[:port]` or a URL) into a Target."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# scheme -> (protocol, starttls, default port)
SCHEMES: dict[str, tuple[str, bool, int]] = {
    "smtp": ("smtp", True, 587),
    "smtps": ("smtp", False, 465),
    "imap": ("imap", True, 143),
    "imaps": ("imap", False, 993),
    "pop3": ("pop3", True, 110),
    "pop3s": ("pop3", False, 995),
    "tls": ("tls", False, 443),
}
# well-known port -> scheme, used when no scheme is given
PORT_SCHEMES: dict[int, str] = {
    25: "smtp",
    587: "smtp",
    2525: "smtp",
    465: "smtps",
    143: "imap",
    993: "imaps",
    110: "pop3",
    995: "pop3s",
}
DEFAULT_PORT = 587
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class TargetError(ValueError):
    """A target string that cannot be probed."""


@dataclass(frozen=True, slots=True)
class Target:
    raw: str
    scheme: str
    host: str
    port: int

    @property
    def protocol(self) -> str:
        return SCHEMES[self.scheme][0]

    @property
    def starttls(self) -> bool:
        return SCHEMES[self.scheme][1]

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_target(text: str) -> Target:
    raw = text.strip()
    if not raw:
        raise TargetError("empty target")
    if "://" in raw:
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise TargetError(f"{raw!r}: unknown scheme {scheme!r} (one of {', '.join(SCHEMES)})")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise TargetError(f"{raw!r}: a target is scheme://host[:port], nothing more")
        host = parts.hostname or ""
        try:
            port = parts.port or SCHEMES[scheme][2]
        except ValueError as exc:
            raise TargetError(f"{raw!r}: invalid port") from exc
    else:
        host, port = _split_host_port(raw)
        scheme = PORT_SCHEMES.get(port, "tls")
    host = host.strip("[]").rstrip(".")
    _check_host(raw, host)
    if not 0 < port < 65536:
        raise TargetError(f"{raw!r}: port {port} out of range")
    return Target(raw=raw, scheme=scheme, host=host.lower(), port=port)


def _split_host_port(raw: str) -> tuple[str, int]:
    if raw.startswith("["):  # [v6]:port
        host, _, rest = raw[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise TargetError(f"{raw!r}: expected [address]:port")
        return host, _port(raw, rest[1:]) if rest else DEFAULT_PORT
    if raw.count(":") > 1:  # bare IPv6 address
        return raw, DEFAULT_PORT
    host, sep, port = raw.partition(":")
    return host, _port(raw, port) if sep else DEFAULT_PORT


def _port(raw: str, text: str) -> int:
    if not text.isdigit():
        raise TargetError(f"{raw!r}: port {text!r} is not a number")
    return int(text)


def _check_host(raw: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not _HOST_RE.match(host):
        raise TargetError(f"{raw!r}: {host!r} is not a valid host name or address")
