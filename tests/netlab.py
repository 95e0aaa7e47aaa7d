"""A routed lab network built from namespaces and veth links: client -> firewall -> relay, removed afterwards.

Addresses come from the documentation ranges (RFC 5737, RFC 3849), which no real host uses; traffic never
leaves the namespaces."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.support import ROOT, stop, wait_listening

CLIENT_V4, FW_IN_V4, FW_OUT_V4, RELAY_V4 = "198.51.100.2", "198.51.100.1", "203.0.113.1", "203.0.113.2"
CLIENT_V6, FW_IN_V6, FW_OUT_V6, RELAY_V6 = "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::1", "2001:db8:2::2"


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Net:
    client: str
    fw: str
    relay: str
    fw_in_dev: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(
        self,
        ns: str,
        *argv: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def ns(self, ns: str, *argv: str) -> None:
        sh("ip", "netns", "exec", ns, *argv)

    def start(self, ns: str, *argv: str, ready: int | None = None) -> subprocess.Popen[str]:
        """Start ``argv`` in ``ns``; with ``ready``, return once it listens on that port (any address)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.procs.append(proc)
        if ready is not None:
            try:
                wait_listening(ready, proc, " ".join(argv[:4]), host=None, netns=ns, timeout=20)
            except RuntimeError as exc:
                err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"{exc}\n{err}") from None
        return proc

    def python(self, ns: str, *argv: str, ready: int | None = None) -> subprocess.Popen[str]:
        return self.start(ns, sys.executable, *argv, ready=ready)


@contextlib.contextmanager
def topology() -> Iterator[Net]:
    tag = f"rw{os.getpid() % 10000}"
    net = Net(f"{tag}c", f"{tag}f", f"{tag}r", f"{tag}fi")
    links = [
        (net.client, f"{tag}ci", net.fw, net.fw_in_dev, CLIENT_V4, FW_IN_V4, CLIENT_V6, FW_IN_V6),
        (net.fw, f"{tag}fo", net.relay, f"{tag}ri", FW_OUT_V4, RELAY_V4, FW_OUT_V6, RELAY_V6),
    ]
    try:
        for ns in (net.client, net.fw, net.relay):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for a_ns, a_dev, b_ns, b_dev, a4, b4, a6, b6 in links:
            sh(
                "ip",
                "link",
                "add",
                a_dev,
                "netns",
                a_ns,
                "type",
                "veth",
                "peer",
                "name",
                b_dev,
                "netns",
                b_ns,
            )
            for ns, dev, v4, v6 in ((a_ns, a_dev, a4, a6), (b_ns, b_dev, b4, b6)):
                sh("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
                sh("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
                sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", net.client, "route", "add", "default", "via", FW_IN_V4)
        sh("ip", "-n", net.client, "-6", "route", "add", "default", "via", FW_IN_V6)
        sh("ip", "-n", net.relay, "route", "add", "default", "via", FW_OUT_V4)
        sh("ip", "-n", net.relay, "-6", "route", "add", "default", "via", FW_OUT_V6)
        for key in (
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ):
            sh("ip", "netns", "exec", net.fw, "sysctl", "-qw", key)
        yield net
    finally:
        for proc in net.procs:
            stop(proc)
        for ns in (net.client, net.fw, net.relay):
            sh("ip", "netns", "del", ns, check=False)
