"""Processes of known intercepting products (names from agent/data/interceptors.yml), and the process
that owns the far end of a probe's connection when that end is on this host (a local proxy or redirect)."""

from __future__ import annotations

import os
import socket

import psutil
from relaywatch.addresses import socket_family
from relaywatch.analysis.interceptors import catalogue
from relaywatch.host.model import LocalProcess


def _product_of(name: str, exe: str) -> str | None:
    product = catalogue().process(name, exe)
    return product.product if product else None


def _describe(proc: psutil.Process) -> LocalProcess:
    with proc.oneshot():
        name = proc.name()
        try:
            exe = proc.exe()
        except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
            exe = ""
    return LocalProcess(proc.pid, name, exe, _product_of(name, exe))


def interceptor_processes(limit: int = 20) -> tuple[LocalProcess, ...]:
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            name = proc.info["name"] or ""
            if _product_of(name, "") is None:
                continue
            found.append(_describe(proc))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if len(found) >= limit:
            break
    return tuple(found)


def local_peer(local: tuple[str, int]) -> LocalProcess | None:
    """The process on this host holding the other end of our connection from `local`, if any.

    With a redirect (iptables REDIRECT, a local proxy) the far end's socket is not at the address we
    dialled, but it is connected to our `local` endpoint, so that is what identifies it. On Linux the
    kernel's socket table answers whether such a socket exists in one read; only then are processes
    searched for its owner."""
    if os.path.exists("/proc/net/tcp"):
        inode = _peer_inode(local)
        if inode is None:
            return None
        pid = _owner_of(inode)
        if pid is None or pid == os.getpid():
            return None
        try:
            return _describe(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
    return _local_peer_psutil(local)


def _hex_endpoint(ip: str, port: int) -> str:
    """An endpoint as /proc/net/tcp{,6} writes it: address bytes in host order per 32-bit word, then port."""
    packed = socket.inet_pton(socket_family(ip), ip)
    words = [packed[i : i + 4][::-1] for i in range(0, len(packed), 4)]  # little-endian hosts
    return b"".join(words).hex().upper() + f":{port:04X}"


def _peer_inode(local: tuple[str, int]) -> int | None:
    ip = _norm(local[0])
    wanted = {_hex_endpoint(ip, local[1])}
    if ":" not in ip:  # an IPv4 peer may sit on a dual-stack IPv6 socket
        mapped = socket.inet_pton(socket.AF_INET6, "::ffff:" + ip)
        wanted.add(
            b"".join(mapped[i : i + 4][::-1] for i in range(0, 16, 4)).hex().upper() + f":{local[1]:04X}"
        )
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[2] in wanted and fields[3] == "01":  # ESTABLISHED
                        return int(fields[9])
        except OSError:
            continue
    return None


def _owner_of(inode: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in psutil.pids():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
        except OSError:
            continue
    return None


def _local_peer_psutil(local: tuple[str, int]) -> LocalProcess | None:
    me = os.getpid()
    try:
        conns = psutil.net_connections(kind="tcp6" if ":" in local[0] else "tcp4")
    except (psutil.AccessDenied, OSError):
        return None
    for c in conns:
        if not c.raddr or c.pid in (None, me):
            continue
        if (_norm(c.raddr.ip), c.raddr.port) == (_norm(local[0]), local[1]):
            try:
                return _describe(psutil.Process(c.pid))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
    return None


def _norm(ip: str) -> str:
    return ip.removeprefix("::ffff:")
