"""Host name -> the addresses to probe, each reported apart (interception can differ per address)."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket

from agent.probe.limits import ProbeError

FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6, "any": socket.AF_UNSPEC}
# getaddrinfo has no timeout of its own; a few threads let a hung resolver time out the probe instead.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


def resolve(host: str, port: int, family: str = "any", timeout: float = 5.0) -> list[str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if family != "any" and str(ip.version) != family:
            raise ProbeError("resolve", "unreachable", f"{host} is not an IPv{family} address")
        return [str(ip)]
    future = _POOL.submit(socket.getaddrinfo, host, port, FAMILIES[family], socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as exc:
        raise ProbeError("resolve", "unreachable", f"resolving {host} took longer than {timeout:g}s") from exc
    except socket.gaierror as exc:
        raise ProbeError("resolve", "unreachable", f"cannot resolve {host}: {exc.strerror}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ProbeError("resolve", "unreachable", f"{host} has no IPv{family} address")
    return addresses
