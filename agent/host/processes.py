"""Processes of known intercepting products (names from agent/data/interceptors.yml), and the process
that owns the far end of a probe's connection when that end is on this host (a local proxy or redirect)."""

from __future__ import annotations

import os

import psutil

from agent.analysis.interceptors import products
from agent.model import LocalProcess


def _product_of(name: str, exe: str) -> str | None:
    candidates = {
        name.lower(),
        os.path.basename(exe).lower(),
        os.path.splitext(os.path.basename(exe))[0].lower(),
    }
    for p in products():
        if any(proc.lower() in candidates for proc in p.processes):
            return p.product
    return None


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


def local_peer(local: tuple[str, int], remote: tuple[str, int]) -> LocalProcess | None:
    """The process on this host holding the other end of our connection `local` -> `remote`, if any.

    With a redirect (iptables REDIRECT, a local proxy) the far end's socket is not at `remote` but it is
    connected to our `local` endpoint, so that is what identifies it."""
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
