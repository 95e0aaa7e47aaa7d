"""Host name -> the addresses to probe, each reported apart (interception can differ per address)."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket

from relaywatch.addresses import AddressFamily
from relaywatch.probe.limits import ProbeError

# getaddrinfo has no timeout of its own; threads let a hung resolver time out the probe instead (as many
# as probes may run at once, so a slow lookup never queues behind others)
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="resolve")


def resolve(
    host: str,
    port: int,
    family: AddressFamily = AddressFamily.ANY,
    timeout: float = 5.0,
    max_addresses: int = 16,
) -> list[str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not family.admits(str(ip)):
            raise ProbeError("resolve", "unreachable", f"{host} is not an IPv{family} address")
        return [str(ip)]
    future = _POOL.submit(socket.getaddrinfo, host, port, family.socket_family, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as exc:
        raise ProbeError("resolve", "unreachable", f"resolving {host} took longer than {timeout:g}s") from exc
    except socket.gaierror as exc:
        raise ProbeError("resolve", "unreachable", f"cannot resolve {host}: {exc.strerror}") from exc
    # capped: each address is a probe and a set of series, and a hostile zone could list thousands
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))[:max_addresses]
    if not addresses:
        raise ProbeError("resolve", "unreachable", f"{host} has no IPv{family} address")
    return addresses
