"""Address families: what a user may ask for (4, 6, any) and the socket family of an address, in one place."""

from __future__ import annotations

import enum
import ipaddress
import socket


class AddressFamily(enum.StrEnum):
    """`--address-family` and a target's `address_family`: which addresses of a name are probed."""

    V4 = "4"
    V6 = "6"
    ANY = "any"

    @property
    def socket_family(self) -> socket.AddressFamily:
        return {"4": socket.AF_INET, "6": socket.AF_INET6, "any": socket.AF_UNSPEC}[self.value]

    def admits(self, address: str) -> bool:
        return self is AddressFamily.ANY or str(ipaddress.ip_address(address).version) == self.value


def socket_family(address: str) -> socket.AddressFamily:
    """The family of an IP address literal (IPv4-mapped IPv6 addresses are IPv6 sockets)."""
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def is_ipv6(address: str) -> bool:
    return socket_family(address) == socket.AF_INET6
