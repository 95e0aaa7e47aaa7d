"""Host name -> the addresses to probe, each reported apart (interception can differ per address).

Lab and test seam: when `RELAYWATCH_HOSTS_FILE` names a file in hosts(5) format, the names it lists
resolve to its addresses only (other names go to the system resolver). The test suite uses it to give a
name several loopback addresses, in-process and in `relaywatch run` subprocesses alike, instead of
rewriting /etc/hosts. It is read only when set; production configurations leave it unset."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import socket
import threading
from pathlib import Path

from relaywatch.addresses import AddressFamily
from relaywatch.probe.limits import ProbeError

HOSTS_FILE_ENV = "RELAYWATCH_HOSTS_FILE"
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
    static = _static_hosts().get(host.lower().rstrip("."))
    if static is not None:
        return _capped(host, family, [a for a in static if family.admits(a)], max_addresses)
    future = _POOL.submit(socket.getaddrinfo, host, port, family.socket_family, socket.SOCK_STREAM)
    try:
        infos = [str(info[4][0]) for info in future.result(timeout=timeout)]
    except concurrent.futures.TimeoutError as exc:
        raise ProbeError("resolve", "unreachable", f"resolving {host} took longer than {timeout:g}s") from exc
    except socket.gaierror as exc:
        raise ProbeError("resolve", "unreachable", f"cannot resolve {host}: {exc.strerror}") from exc
    return _capped(host, family, infos, max_addresses)


def _capped(host: str, family: AddressFamily, addresses: list[str], max_addresses: int) -> list[str]:
    # capped: each address is a probe and a set of series, and a hostile zone could list thousands
    unique = list(dict.fromkeys(addresses))[:max_addresses]
    if not unique:
        raise ProbeError("resolve", "unreachable", f"{host} has no IPv{family} address")
    return unique


_hosts_lock = threading.Lock()
_hosts_cache: dict[tuple[str, int], dict[str, tuple[str, ...]]] = {}


def _static_hosts() -> dict[str, tuple[str, ...]]:
    """The `RELAYWATCH_HOSTS_FILE` mapping (name -> addresses in file order); empty when unset. Re-read
    when the file changes, so a test can rewrite it between probes of a running agent."""
    path = os.environ.get(HOSTS_FILE_ENV)
    if not path:
        return {}
    try:
        stamp = Path(path).stat().st_mtime_ns
        with _hosts_lock:
            hit = _hosts_cache.get((path, stamp))
            if hit is not None:
                return hit
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeError("resolve", "unreachable", f"{HOSTS_FILE_ENV}={path}: {exc}") from exc
    mapping = parse_hosts(text, path)
    with _hosts_lock:
        _hosts_cache.clear()
        _hosts_cache[(path, stamp)] = mapping
    return mapping


def parse_hosts(text: str, source: str = "hosts") -> dict[str, tuple[str, ...]]:
    """hosts(5): `address name [alias...]`, `#` to the end of a line. A bad address is an error naming the
    line, so that a mistyped lab mapping fails loudly instead of falling through to real DNS."""
    out: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0]))
        except ValueError:
            raise ProbeError(
                "resolve", "unreachable", f"{source}:{number}: {fields[0][:80]!r} is not an IP address"
            ) from None
        if len(fields) < 2:
            raise ProbeError("resolve", "unreachable", f"{source}:{number}: no name for {address}")
        for name in fields[1:]:
            out.setdefault(name.lower().rstrip("."), []).append(address)
    return {name: tuple(addresses) for name, addresses in out.items()}
