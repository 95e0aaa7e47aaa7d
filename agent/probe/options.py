"""How a probe runs. Light on purpose: the agent's main process imports it without the TLS stack."""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass

from relaywatch.addresses import AddressFamily
from relaywatch.probe.dnsconfig import DNSConfig
from relaywatch.probe.limits import Limits


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    limits: Limits = Limits()
    ehlo_name: str | None = None
    address_family: AddressFamily = AddressFamily.ANY
    first_address: bool = False
    inspect_local_peer: bool = False  # find the process on this host that holds the far end (psutil)
    dns: DNSConfig = DNSConfig()  # gateway DNS: MX, DNSSEC, TLSA, MTA-STS


@functools.cache
def default_ehlo_name() -> str:
    name = socket.getfqdn()
    return name if name and all(c.isalnum() or c in "-." for c in name) else "localhost"
