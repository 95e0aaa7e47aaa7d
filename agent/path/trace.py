"""The measurements, with scapy and raw sockets. Imported only in the worker process (worker.py)."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import time
from typing import Any

from relaywatch.addresses import is_ipv6, socket_family
from relaywatch.path import scapy_lite  # noqa: F401  # before any scapy import: no MAC vendor tables, no cache
from relaywatch.path.model import Hop, PathTrace, SentSyn

# Only the layers used, never scapy.all (which loads every protocol and route table).
from scapy.config import conf
from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6TimeExceeded, IPerror6, IPv6
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer, sr

SENT_MSS, SENT_WINDOW, SENT_WSCALE = 1460, 64240, 7
conf.verb = 0


_ROUTES_READ: set[bool] = set()  # the families (is IPv6) whose routing table this process has read


def _read_routes(address: str) -> None:
    """The routing table of the address's family, read once per process: scapy_lite keeps scapy from reading
    both at import, and a trace of an IPv4 address never needs the IPv6 one (or the reverse)."""
    v6 = is_ipv6(address)
    if v6 in _ROUTES_READ:
        return
    if v6:
        conf.route6.resync()
    else:
        conf.route.resync()
        # scapy's default interface comes from the IPv4 default route; a process whose first trace is IPv6
        # keeps loopback as that default until an IPv4 trace (scapy consults it only to break ties between
        # interfaces for link-local and multicast IPv6 destinations, which a mail relay's address is not)
        conf.ifaces.load_confiface()
    _ROUTES_READ.add(v6)


def _use_loopback_sockets(address: str) -> None:
    """scapy's link-layer sockets do not see loopback traffic; raw L3 sockets do."""
    if ipaddress.ip_address(address).is_loopback:
        from scapy.supersocket import L3RawSocket, L3RawSocket6

        conf.L3socket, conf.L3socket6 = L3RawSocket, L3RawSocket6


def _ip(address: str, ttl: int):  # type: ignore[no-untyped-def]
    return IPv6(dst=address, hlim=ttl) if is_ipv6(address) else IP(dst=address, ttl=ttl)


def _options() -> list[tuple[str, Any]]:
    return [
        ("MSS", SENT_MSS),
        ("SAckOK", b""),
        ("Timestamp", (random.getrandbits(32), 0)),
        ("NOP", None),
        ("WScale", SENT_WSCALE),
    ]


def _ttl_of(packet) -> int | None:  # type: ignore[no-untyped-def]
    layer = packet.getlayer(IPv6) or packet.getlayer(IP)
    if layer is None:
        return None
    return int(layer.hlim if isinstance(layer, IPv6) else layer.ttl)


def _changes(quoted) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    """tracebox's idea: what a router quotes back is the packet as it arrived there."""
    tcp = quoted.getlayer(TCPerror)
    if tcp is None:
        return ()
    out = []
    opts = dict((k, v) for k, v in tcp.options if isinstance(k, str)) if tcp.options else {}
    if tcp.options:  # only when the quote is long enough to hold options
        if "MSS" not in opts:
            out.append("mss_removed")
        elif opts["MSS"] != SENT_MSS:
            out.append(f"mss_rewritten:{SENT_MSS}->{opts['MSS']}")
        kinds = [k for k, _ in tcp.options]
        if "WScale" not in kinds:
            out.append("wscale_removed")
        if "SAckOK" not in kinds:
            out.append("sackok_removed")
    if tcp.window not in (None, 0) and tcp.window != SENT_WINDOW:
        out.append(f"window_rewritten:{SENT_WINDOW}->{tcp.window}")
    return tuple(out)


def tcp_trace(address: str, port: int, max_hops: int, timeout: float) -> tuple[Hop, ...]:
    sport = random.randint(33000, 60000)
    probes = [
        _ip(address, ttl)
        / TCP(
            sport=sport + ttl,
            dport=port,
            flags="S",
            seq=random.getrandbits(32),
            window=SENT_WINDOW,
            options=_options(),
        )
        for ttl in range(1, max_hops + 1)
    ]
    answered, _ = sr(probes, timeout=timeout, inter=0.002, verbose=0)
    by_ttl: dict[int, Hop] = {}
    for sent, reply in answered:
        ttl = int(sent.hlim if is_ipv6(address) else sent.ttl)
        rtt = (float(reply.time) - float(sent.sent_time)) * 1000 if sent.sent_time else None
        src = reply.src
        if reply.haslayer(TCP) and not reply.haslayer(TCPerror):
            kind = "syn_ack" if reply[TCP].flags & 0x12 == 0x12 else "rst"
            by_ttl[ttl] = Hop(ttl, src, rtt, kind)
        elif reply.haslayer(IPerror) or reply.haslayer(IPerror6):
            icmp_kind = (
                "time_exceeded"
                if (reply.haslayer(ICMPv6TimeExceeded) or (reply.haslayer(ICMP) and reply[ICMP].type == 11))
                else "unreachable"
            )
            by_ttl[ttl] = Hop(ttl, src, rtt, icmp_kind, _changes(reply))
    hops: list[Hop] = []
    for ttl in range(1, max_hops + 1):
        hop = by_ttl.get(ttl, Hop(ttl, None, None, "none"))
        hops.append(hop)
        if hop.kind in ("syn_ack", "rst"):
            break
    return tuple(hops)


def echo_trace(address: str, max_hops: int, timeout: float) -> tuple[Hop, ...]:
    ident = random.getrandbits(16)
    probes: list[Packet]
    if is_ipv6(address):
        probes = [
            IPv6(dst=address, hlim=t) / ICMPv6EchoRequest(id=ident, seq=t) for t in range(1, max_hops + 1)
        ]
    else:
        probes = [IP(dst=address, ttl=t) / ICMP(id=ident, seq=t) for t in range(1, max_hops + 1)]
    answered, _ = sr(probes, timeout=timeout, inter=0.002, verbose=0)
    by_ttl: dict[int, Hop] = {}
    for sent, reply in answered:
        ttl = int(sent.hlim if is_ipv6(address) else sent.ttl)
        rtt = (float(reply.time) - float(sent.sent_time)) * 1000 if sent.sent_time else None
        echo = reply.haslayer(ICMPv6EchoReply) or (
            reply.haslayer(ICMP) and reply[ICMP].type == 0 and not reply.haslayer(IPerror)
        )
        by_ttl[ttl] = Hop(ttl, reply.src, rtt, "echo_reply" if echo else "time_exceeded")
    hops: list[Hop] = []
    for ttl in range(1, max_hops + 1):
        hop = by_ttl.get(ttl, Hop(ttl, None, None, "none"))
        hops.append(hop)
        if hop.kind == "echo_reply":
            break
    return tuple(hops)


def server_ttls(
    address: str, port: int, timeout: float, implicit_tls: bool = False
) -> tuple[int | None, int | None]:
    """TTL of the SYN-ACK and of the server's first data packet: the greeting, or under implicit TLS the
    ServerHello (sent in answer to a ClientHello)."""
    bpf = f"tcp and src host {address} and src port {port}"
    # on the interface the route to the address leaves by (lo for the lab's loopback relays), not the
    # default one, which never sees those answers
    route = conf.route6.route(address) if is_ipv6(address) else conf.route.route(address)
    sniffer = AsyncSniffer(iface=route[0], filter=bpf, store=True)
    sniffer.start()
    time.sleep(0.2)
    try:
        family = socket_family(address)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((address, port))
            with contextlib.suppress(TimeoutError, OSError):  # ssl.SSLError is an OSError
                if implicit_tls:
                    import ssl  # only for implicit TLS: 16 ms of a fresh tracer's import otherwise

                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                    ctx.wrap_socket(s).close()
                else:
                    s.recv(512)
    except OSError:
        pass
    time.sleep(0.2)
    sniffer.stop()
    synack = greeting = None
    for p in sniffer.results or []:
        if not p.haslayer(TCP):
            continue
        if p[TCP].flags & 0x12 == 0x12 and synack is None:
            synack = _ttl_of(p)
        elif len(bytes(p[TCP].payload)) > 0 and greeting is None:
            greeting = _ttl_of(p)
    return synack, greeting


def measure(
    address: str, port: int, max_hops: int = 16, timeout: float = 2.0, implicit_tls: bool = False
) -> PathTrace:
    _read_routes(address)
    _use_loopback_sockets(address)
    return PathTrace(
        address=address,
        port=port,
        tcp_hops=tcp_trace(address, port, max_hops, timeout),
        echo_hops=echo_trace(address, max_hops, timeout),
        synack_ttl=(ttls := server_ttls(address, port, timeout, implicit_tls))[0],
        greeting_ttl=ttls[1],
        sent=SentSyn(SENT_MSS, SENT_WINDOW, SENT_WSCALE),
    )
