"""The path judge on synthetic traces: where the mail port answers against where the address is, which
is what tells a transparent proxy or intercepting firewall from the real relay."""

from __future__ import annotations

import json

import pytest
from relaywatch.codec import convert, to_builtins
from relaywatch.path.judge import distance_from_ttl, judge, unavailable
from relaywatch.path.model import Hop, PathResult, PathTrace, SentSyn

FW, RELAY = "198.51.100.1", "203.0.113.2"
SENT = SentSyn(1460, 64240, 7)


def trace(
    tcp: tuple[Hop, ...],
    echo: tuple[Hop, ...] = (),
    synack_ttl: int | None = None,
    greeting_ttl: int | None = None,
) -> PathTrace:
    return PathTrace(RELAY, 25, tcp, echo, synack_ttl, greeting_ttl, SENT)


def exceeded(ttl: int, address: str | None = FW, changes: tuple[str, ...] = ()) -> Hop:
    return Hop(ttl, address, 1.0, "time_exceeded", changes)


def silent(ttl: int) -> Hop:
    return Hop(ttl, None, None, "none")


@pytest.mark.parametrize(
    ("ttl", "hops"),
    [(64, 1), (63, 2), (62, 3), (128, 1), (120, 9), (255, 1), (250, 6), (32, 1), (33, 32), (None, None)],
)
def test_distance_assumes_the_next_common_initial_ttl(ttl: int | None, hops: int | None) -> None:
    assert distance_from_ttl(ttl) == hops


def test_answer_at_the_destination_is_not_interception() -> None:
    t = trace(
        (exceeded(1), Hop(2, RELAY, 2.0, "syn_ack")),
        (exceeded(1), Hop(2, RELAY, 2.0, "echo_reply")),
        synack_ttl=63,
        greeting_ttl=63,
    )
    r = judge(t)
    assert r.status == "terminated_at_destination"
    assert (r.terminating_hop, r.destination_hop, r.hops, r.server_distance) == (2, 2, 2, 2)
    assert r.middlebox is None and not r.packet_modified and r.modifications == ()
    assert r.trace is t


def test_mail_port_answering_before_the_address_is_a_middlebox() -> None:
    """sslsplit in the firewall: SYN-ACK at hop 1, while the address itself answers echo at hop 2."""
    r = judge(
        trace(
            (Hop(1, RELAY, 1.0, "syn_ack"),),
            (exceeded(1), Hop(2, RELAY, 2.0, "echo_reply")),
            synack_ttl=64,
            greeting_ttl=64,
        )
    )
    assert r.status == "terminated_early"
    assert (r.terminating_hop, r.destination_hop, r.server_distance) == (1, 2, 1)
    assert r.middlebox == FW  # the hop that said time-exceeded at that TTL
    assert FW in r.reason and "terminates the TCP session" in r.reason


def test_middlebox_unknown_when_no_hop_named_itself() -> None:
    r = judge(trace((Hop(1, RELAY, 1.0, "syn_ack"),), (silent(1), Hop(2, RELAY, 2.0, "echo_reply"))))
    assert r.status == "terminated_early" and r.middlebox is None and "()" not in r.reason


def test_rst_terminates_like_a_syn_ack() -> None:
    r = judge(
        trace((exceeded(1), Hop(2, RELAY, 1.0, "rst")), (exceeded(1), Hop(3, RELAY, 1.0, "echo_reply")))
    )
    assert (r.status, r.terminating_hop) == ("terminated_early", 2)


def test_no_answer_from_the_mail_port_is_inconclusive() -> None:
    r = judge(trace((exceeded(1), silent(2), silent(3)), (exceeded(1), Hop(2, RELAY, 2.0, "echo_reply"))))
    assert r.status == "inconclusive" and r.terminating_hop is None and r.destination_hop == 2
    assert "no SYN-ACK or RST" in r.reason


def test_filtered_echo_is_inconclusive_unless_the_ttl_says_early() -> None:
    tcp = (exceeded(1), exceeded(2, "192.0.2.9"), Hop(3, RELAY, 3.0, "syn_ack"))
    far = judge(trace(tcp, (silent(1), silent(2), silent(3)), synack_ttl=62, greeting_ttl=62))
    assert far.status == "inconclusive" and "filtered" in far.reason  # distance 3 is consistent with hop 3
    near = judge(trace(tcp, (silent(1), silent(2), silent(3)), synack_ttl=62, greeting_ttl=64))
    assert near.status == "terminated_early" and near.server_distance == 1  # the greeting came from 1 hop


def test_the_greeting_ttl_counts_over_the_syn_ack_ttl() -> None:
    """A proxy may let the real server's SYN-ACK through and answer the session itself."""
    r = judge(trace((Hop(1, RELAY, 1.0, "syn_ack"),), synack_ttl=64, greeting_ttl=63))
    assert r.server_distance == 2
    assert judge(trace((Hop(1, RELAY, 1.0, "syn_ack"),), synack_ttl=62)).server_distance == 3


def test_header_changes_are_reported_once_per_hop() -> None:
    mss = ("mss_rewritten:1460->1200",)
    r = judge(
        trace(
            (exceeded(1, changes=mss), exceeded(1, changes=mss), Hop(2, RELAY, 2.0, "syn_ack")),
            (exceeded(1), Hop(2, RELAY, 2.0, "echo_reply")),
        )
    )
    assert r.status == "terminated_at_destination" and r.packet_modified
    assert r.modifications == ("hop 1: mss_rewritten:1460->1200",)


def test_unavailable_carries_its_reason_and_no_numbers() -> None:
    r = unavailable("raw sockets need CAP_NET_RAW")
    assert r.status == "unavailable" and r.reason == "raw sockets need CAP_NET_RAW"
    assert (r.hops, r.terminating_hop, r.destination_hop, r.trace) == (None, None, None, None)


def test_a_trace_judged_after_the_worker_json_round_trip_is_the_same() -> None:
    """The worker measures in another process and sends JSON; the agent judges what arrives."""
    t = trace(
        (exceeded(1, changes=("window_changed",)), Hop(2, RELAY, 2.0, "syn_ack")),
        (exceeded(1), Hop(2, RELAY, 2.0, "echo_reply")),
        synack_ttl=63,
        greeting_ttl=63,
    )
    back = convert(json.loads(json.dumps(to_builtins(t))), PathTrace)
    assert back == t and judge(back) == judge(t)
    doc = json.loads(json.dumps(to_builtins(judge(t))))
    assert doc["status"] == "terminated_at_destination" and convert(doc, PathResult) == judge(t)
