"""How gateway DNS (MX, TLSA, MTA-STS) is looked up. Light on purpose: the agent's main process parses its
config with it and never loads dnspython.

Only answers with the AD bit from the configured resolver count as DNSSEC-secure, so that resolver must be
a validating one the agent trusts, on this host or across a link nobody else can write to (RFC 7672 §8.1 of
RFC 6698's caveat): an AD bit from a remote resolver proves nothing about the way back.

Lab seams (tests only, like RELAYWATCH_HOSTS_FILE): `RELAYWATCH_MTA_STS_PORT` is the HTTPS port the MTA-STS
policy is fetched from (default 443) and `RELAYWATCH_MTA_STS_CA_FILE` the CA bundle it is validated against
(default: this host's trust store)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

MTA_STS_PORT_ENV = "RELAYWATCH_MTA_STS_PORT"
MTA_STS_CA_FILE_ENV = "RELAYWATCH_MTA_STS_CA_FILE"


class DNSSECMode(enum.StrEnum):
    AUTO = "auto"  # DANE when the answers are secure; insecure answers are information
    REQUIRE = "require"  # an insecure answer for a gateway host is a finding
    OFF = "off"  # no DNSSEC, no DANE (MX and MTA-STS still looked up for mx: targets)


@dataclass(frozen=True, slots=True)
class DNSConfig:
    resolver: str | None = None  # "127.0.0.1:53", "[::1]:5353"; None: the first nameserver of resolv.conf
    dnssec: DNSSECMode = DNSSECMode.AUTO


def parse_resolver(text: str) -> tuple[str, int]:
    """`address[:port]` or `[v6]:port`; an IP address, never a name (resolving the resolver is circular)."""
    raw = text.strip()
    host, port = raw, "53"
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [address]:port")
            port = rest[1:]
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text[:80]!r}: the resolver is an IP address[:port]") from None
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text[:80]!r}: port {port[:10]!r} out of range")
    return str(address), int(port)
