"""From the measured numbers to a conclusion a security team can act on: does the mail port answer at
the destination's distance, or earlier (a transparent proxy or intercepting firewall), and were our
packets altered on the way."""

from __future__ import annotations

from relaywatch.path.model import PathResult, PathStatus, PathTrace

_INITIAL_TTLS = (32, 64, 128, 255)


def distance_from_ttl(ttl: int | None) -> int | None:
    """Hops a packet travelled, assuming the sender used the next common initial TTL."""
    if ttl is None:
        return None
    initial = next(t for t in _INITIAL_TTLS if t >= ttl)
    return initial - ttl + 1


def unavailable(reason: str) -> PathResult:
    return PathResult(PathStatus.UNAVAILABLE, reason, None, None, None, None, None, False, (), None)


def judge(trace: PathTrace) -> PathResult:
    terminating = next((h for h in trace.tcp_hops if h.kind in ("syn_ack", "rst")), None)
    destination = next((h for h in trace.echo_hops if h.kind == "echo_reply"), None)
    modifications = tuple(dict.fromkeys(f"hop {h.ttl}: {c}" for h in trace.tcp_hops for c in h.changes))
    server_distance = distance_from_ttl(trace.greeting_ttl or trace.synack_ttl)
    t = terminating.ttl if terminating else None
    d = destination.ttl if destination else None
    hops = max((h.ttl for h in (*trace.tcp_hops, *trace.echo_hops) if h.address), default=None)

    def result(status: PathStatus, reason: str, middlebox: str | None = None) -> PathResult:
        return PathResult(
            status, reason, hops, t, d, middlebox, server_distance, bool(modifications), modifications, trace
        )

    if t is None:
        return result(PathStatus.INCONCLUSIVE, "no SYN-ACK or RST came back for the mail port")
    if d is None:
        if server_distance is not None and server_distance < t:
            why = (
                f"ICMP echo unanswered; the server's packets travelled {server_distance} hops, fewer than {t}"
            )
            return result(PathStatus.TERMINATED_EARLY, why)
        return result(
            PathStatus.INCONCLUSIVE,
            f"the mail port answers at hop {t}, but ICMP echo to the address is "
            "filtered, so the destination's distance is unknown",
        )
    if t < d:
        hop = next(
            (
                h
                for h in (*trace.echo_hops, *trace.tcp_hops)
                if h.ttl == t and h.address and h.kind == "time_exceeded"
            ),
            None,
        )
        middlebox = hop.address if hop else None
        where = f" ({middlebox})" if middlebox else ""
        why = (
            f"the mail port answers at hop {t}{where} while the address itself is {d} hops away: "
            "something on the path terminates the TCP session (transparent proxy or intercepting firewall)"
        )
        return result(PathStatus.TERMINATED_EARLY, why, middlebox)
    why = f"the mail port answers at hop {t}, the destination's own distance ({d})"
    return result(PathStatus.TERMINATED_AT_DESTINATION, why)
