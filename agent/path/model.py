"""The path trace's results, shared by the worker (which measures) and the agent (which judges)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PathStatus(enum.StrEnum):
    """The conclusions of a path trace; the judge, the metrics (a state set) and the dashboard use these."""

    TERMINATED_AT_DESTINATION = "terminated_at_destination"
    TERMINATED_EARLY = "terminated_early"  # a transparent proxy or intercepting firewall on the path
    INCONCLUSIVE = "inconclusive"  # ICMP filtered: the destination's distance is unknown
    UNAVAILABLE = "unavailable"  # no raw sockets (CAP_NET_RAW) or no address to trace

    @property
    def middlebox(self) -> bool:
        return self is PathStatus.TERMINATED_EARLY


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    address: str | None  # None: no answer at this TTL
    rtt_ms: float | None
    kind: str  # time_exceeded, syn_ack, rst, echo_reply, unreachable, none
    changes: tuple[str, ...] = ()  # how the TCP header quoted back differs from what was sent


@dataclass(frozen=True, slots=True)
class PathTrace:
    """What the worker measured: the TCP trace to the mail port, the ICMP echo trace to the address, and the
    TTL of the server's own packets."""

    address: str
    port: int
    tcp_hops: tuple[Hop, ...]
    echo_hops: tuple[Hop, ...]
    synack_ttl: int | None
    greeting_ttl: int | None  # the server's first data packet: greeting, or ServerHello (implicit TLS)
    sent: SentSyn


@dataclass(frozen=True, slots=True)
class SentSyn:
    """The TCP options of our SYN, to compare with what routers quote back (tracebox)."""

    mss: int
    window: int
    wscale: int


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One trace asked of a serving path worker (`--serve`: one JSON line in, one JSON line out)."""

    address: str
    port: int
    max_hops: int = 16
    timeout: float = 2.0
    implicit_tls: bool = False


@dataclass(frozen=True, slots=True)
class WorkerAnswer:
    """What the path worker prints: a trace, or why it could not measure."""

    trace: PathTrace | None = None
    unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class PathResult:
    """The judgement, with the numbers that back it."""

    status: PathStatus
    reason: str
    hops: int | None  # hops seen in the trace
    terminating_hop: int | None  # TTL at which the mail port first answered (SYN-ACK or RST)
    destination_hop: int | None  # TTL at which the address itself answered ICMP echo
    middlebox: str | None  # the address answering for the mail port early, when known
    server_distance: int | None  # hop distance estimated from the TTL of the server's packets
    packet_modified: bool
    modifications: tuple[str, ...]
    trace: PathTrace | None
