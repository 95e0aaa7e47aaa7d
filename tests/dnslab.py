"""A DNSSEC lab on loopback: Knot DNS signs and serves the lab zones, Unbound validates them with the lab
trust anchor. Started by the tests (127.0.77.x, high ports), bounded in time, stopped afterwards.

Zones: `lab.test` (signed automatically by Knot), `_tcp.bogus.lab.test` (signed, but delegated with a DS
that matches none of its keys: everything in it is bogus), `plain.test` (unsigned: insecure)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.rdatatype

from tests.support import stop, tail, which

AUTH = ("127.0.77.53", 53053)
RESOLVER = ("127.0.77.54", 53054)
SIGNED = ("lab.test", "_tcp.bogus.lab.test")
UNSIGNED = ("plain.test",)
BOGUS_DS = "_tcp.bogus 3600 DS 11111 13 2 " + "ab" * 32


@dataclass(frozen=True)
class DNSLab:
    resolver: str  # "address:port" for --dns.resolver

    @property
    def where(self) -> tuple[str, int]:
        host, port = self.resolver.rsplit(":", 1)
        return host, int(port)


def available() -> bool:
    return all(which(c) for c in ("knotd", "keymgr", "kdig", "unbound"))


def _zone(origin: str, records: Sequence[str]) -> str:
    head = (
        f"$ORIGIN {origin}.\n$TTL 60\n@ SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 60\n"
        "@ NS ns.lab.test.\n"
    )
    return head + "".join(f"{r}\n" for r in records)


def _knot_conf(d: Path) -> str:
    zones = "".join(
        f"  - domain: {z}\n    dnssec-signing: on\n    dnssec-policy: lab\n" for z in SIGNED
    ) + "".join(f"  - domain: {z}\n" for z in UNSIGNED)
    return (
        f"server:\n  listen: {AUTH[0]}@{AUTH[1]}\n  rundir: {d}\n"
        f"database:\n  storage: {d}\n"
        "log:\n  - target: stderr\n    any: info\n"
        "policy:\n  - id: lab\n    algorithm: ecdsap256sha256\n    ksk-lifetime: 0\n    zsk-lifetime: 0\n"
        f'template:\n  - id: default\n    storage: {d}\n    file: "%s.zone"\n    zonefile-sync: -1\n'
        "    zonefile-load: difference-no-serial\n    journal-content: all\n"
        f"zone:\n{zones}"
    )


def _unbound_conf(d: Path, anchors: Sequence[str]) -> str:
    stubs = "".join(
        f"stub-zone:\n  name: {z}\n  stub-addr: {AUTH[0]}@{AUTH[1]}\n" for z in ("lab.test", "plain.test")
    )
    trust = "".join(f'  trust-anchor: "{a}"\n' for a in anchors)
    return (
        "server:\n"
        f"  interface: {RESOLVER[0]}\n  port: {RESOLVER[1]}\n  do-not-query-localhost: no\n"
        '  access-control: 127.0.0.0/8 allow\n  username: ""\n  chroot: ""\n'
        f'  directory: "{d}"\n  pidfile: "{d}/unbound.pid"\n  use-syslog: no\n  logfile: ""\n'
        '  module-config: "validator iterator"\n  local-zone: "test." nodefault\n'
        "  val-log-level: 1\n  verbosity: 1\n  cache-max-ttl: 5\n  cache-max-negative-ttl: 1\n"
        "  infra-host-ttl: 5\n  msg-buffer-size: 65552\n  edns-buffer-size: 1232\n"
        f"{trust}remote-control:\n  control-enable: no\n{stubs}"
    )


def _kdig(name: str, rdtype: str, where: tuple[str, int]) -> str:
    out = subprocess.run(
        [
            "kdig",
            f"@{where[0]}",
            "-p",
            str(where[1]),
            "+dnssec",
            "+time=1",
            "+retry=0",
            name,
            rdtype,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout


@contextmanager
def running_dns_lab(d: Path, zones: Mapping[str, Sequence[str]]) -> Iterator[DNSLab]:
    """zones: origin -> records (relative names). lab.test gets the bogus delegation added."""
    d.mkdir(parents=True, exist_ok=True)
    for origin in (*SIGNED, *UNSIGNED):
        records = list(zones.get(origin, ()))
        if origin == "lab.test":
            records += ["ns A 127.0.77.53", BOGUS_DS, "_tcp.bogus NS ns.lab.test."]
        (d / f"{origin}.zone").write_text(_zone(origin, records))
    conf = d / "knot.conf"
    conf.write_text(_knot_conf(d))
    knot_log = d / "knot.log"
    knot = subprocess.Popen(
        ["knotd", "-c", str(conf)],
        stdout=knot_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    unbound: subprocess.Popen[bytes] | None = None
    try:
        end = time.monotonic() + 20
        while "RRSIG" not in _kdig("lab.test", "DNSKEY", AUTH) or "RRSIG" not in _kdig(
            "_tcp.bogus.lab.test", "DNSKEY", AUTH
        ):
            if knot.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"knotd did not sign the lab zones:\n{tail(knot_log)}")
            time.sleep(0.1)
        ds = subprocess.run(
            ["keymgr", "-c", str(conf), "lab.test.", "ds"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
        anchors = [line.strip() for line in ds if " DS " in line]
        if not anchors:
            raise RuntimeError(f"keymgr gave no DS for lab.test: {ds}")
        uconf = d / "unbound.conf"
        uconf.write_text(_unbound_conf(d, anchors))
        unbound_log = d / "unbound.log"
        unbound = subprocess.Popen(
            ["unbound", "-d", "-c", str(uconf)],
            stdout=unbound_log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        end = time.monotonic() + 15
        while "127.0.77.53" not in _kdig("ns.lab.test", "A", RESOLVER):
            if unbound.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"unbound did not answer:\n{tail(unbound_log)}")
            time.sleep(0.1)
        yield DNSLab(f"{RESOLVER[0]}:{RESOLVER[1]}")
    finally:
        if unbound is not None:
            stop(unbound, "unbound", group=True)
        stop(knot, "knotd", group=True)


@contextmanager
def dropping(upstream: tuple[str, int], rdtypes: Sequence[str], at: str = "127.0.77.55") -> Iterator[str]:
    """A resolver that answers most questions and never some: a UDP forwarder to `upstream` (Unbound)
    that drops every question of the given types, as a resolver that times out in the middle of a
    lookup would. Replies are passed on unchanged (the AD bit included). Yields "address:port"."""
    dropped = {dns.rdatatype.from_text(t) for t in rdtypes}
    done = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as front:
        front.bind((at, 0))
        front.settimeout(0.1)

        def forward(query: bytes, client: tuple[str, int]) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
                back.settimeout(3)
                back.sendto(query, upstream)
                with contextlib.suppress(OSError):
                    front.sendto(back.recv(65535), client)

        def serve() -> None:
            while not done.is_set():
                try:
                    query, client = front.recvfrom(65535)
                    question = dns.message.from_wire(query).question
                except (OSError, dns.exception.DNSException):
                    continue
                if question and question[0].rdtype in dropped:
                    continue
                threading.Thread(target=forward, args=(query, client), daemon=True).start()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield f"{at}:{front.getsockname()[1]}"
        finally:
            done.set()
            thread.join(timeout=5)
