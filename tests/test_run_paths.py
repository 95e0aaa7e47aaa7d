"""Path traces in the agent: bounded in concurrency, urgent ones (new addresses, verdict changes) ahead of
routine re-traces, one tracer process serving a batch of traces."""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from relaywatch.lab.servers import LabServer
from relaywatch.model import ProbeResult, Verdict
from relaywatch.path.client import Tracer
from relaywatch.path.judge import unavailable
from relaywatch.path.model import PathResult
from relaywatch.run.config import Config, TargetConfig, parse_config
from relaywatch.run.evidence import BACKLOG_PER_TRACER, PathRunner
from relaywatch.run.scheduler import failed_result
from relaywatch.run.state import AgentState, Change


def _config(tmp_path: Path, n: int, concurrency: int) -> Config:
    targets = ", ".join(f"t{i}.example:25" for i in range(n))
    text = f"path: {{every: 1, concurrency: {concurrency}}}\ntargets: [{targets}]\n"
    return parse_config(text, "c.yml", tmp_path)


def _result(tc: TargetConfig, address: str) -> ProbeResult:
    r = failed_result(tc, "stand-in")
    return ProbeResult(
        dataclasses.replace(r.record, address=address), dataclasses.replace(r.analysis, verdict=Verdict.OK)
    )


class SlowTracer(Tracer):
    """Records which addresses it traced and how many traces ran at once; each takes `hold` seconds."""

    lock = threading.Lock()
    now = 0
    most = 0
    order: ClassVar[list[str]] = []
    made = 0

    def __init__(self, hold: float = 0.05) -> None:
        super().__init__()
        self.hold = hold
        with SlowTracer.lock:
            SlowTracer.made += 1

    def trace(
        self, address: str, port: int, max_hops: int = 16, timeout: float = 2.0, implicit_tls: bool = False
    ) -> PathResult:
        with SlowTracer.lock:
            SlowTracer.now += 1
            SlowTracer.most = max(SlowTracer.most, SlowTracer.now)
            SlowTracer.order.append(address)
        time.sleep(self.hold)
        with SlowTracer.lock:
            SlowTracer.now -= 1
        return unavailable("stand-in")


def _drain(paths: PathRunner, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with paths._lock:
            if not paths._queue and paths.running == 0:
                return
        time.sleep(0.02)
    raise AssertionError("path traces did not drain")


def test_traces_are_bounded_and_new_addresses_go_first(tmp_path: Path) -> None:
    SlowTracer.now = SlowTracer.most = SlowTracer.made = 0
    SlowTracer.order = []
    state = AgentState(_config(tmp_path, 40, concurrency=3))
    paths = PathRunner(state, SlowTracer)
    try:
        targets = state.config.targets
        # every address known: routine re-traces of the first 20 queue up...
        for tc in targets[:20]:
            r = _result(tc, f"192.0.2.{targets.index(tc) + 1}")
            state.record(tc, [r])
            paths(tc, [r], [])
        # ...then 20 new addresses arrive (their first probe is a change with no previous verdict)
        for i, tc in enumerate(targets[20:], start=21):
            r = _result(tc, f"192.0.2.{i}")
            [change] = state.record(tc, [r])
            assert change.previous is None
            paths(tc, [r], [change])
        _drain(paths)
        assert 1 < SlowTracer.most <= 3  # bounded, and used
        assert SlowTracer.made <= 3  # one tracer per tracing thread, not one per trace
        assert len(SlowTracer.order) == 40
        new = {f"192.0.2.{i}" for i in range(21, 41)}
        # at most the traces already running when the new addresses came are routine ones before them
        first_new = min(i for i, a in enumerate(SlowTracer.order) if a in new)
        last_new = max(i for i, a in enumerate(SlowTracer.order) if a in new)
        assert first_new <= 3 and last_new < 20 + 3
    finally:
        paths.stop()


def test_a_few_traces_share_one_tracer_process(tmp_path: Path) -> None:
    # two targets' new addresses, as after a start with the default config: one tracer does both in turn
    # (a second process would cost its start and ~22 MB for a trace that waits a second); a burst gets more
    SlowTracer.now = SlowTracer.most = SlowTracer.made = 0
    SlowTracer.order = []
    state = AgentState(_config(tmp_path, 2 + BACKLOG_PER_TRACER, concurrency=2))
    paths = PathRunner(state, lambda: SlowTracer(hold=0.2))
    try:
        targets = state.config.targets
        for i, tc in enumerate(targets[:2], start=1):
            r = _result(tc, f"192.0.2.{i}")
            paths(tc, [r], state.record(tc, [r]))
        _drain(paths)
        assert (SlowTracer.made, SlowTracer.most, len(SlowTracer.order)) == (1, 1, 2)
        for i, tc in enumerate(targets, start=11):  # more waiting than one tracer is left with
            r = _result(tc, f"192.0.2.{i}")
            paths(tc, [r], state.record(tc, [r]))
        _drain(paths)
        assert SlowTracer.most == 2 and SlowTracer.made <= 3 and len(SlowTracer.order) == 2 + len(targets)
    finally:
        paths.stop()


def test_a_thread_that_cannot_start_strands_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    SlowTracer.order = []
    state = AgentState(_config(tmp_path, 2, concurrency=2))
    paths = PathRunner(state, SlowTracer)
    start, refused = threading.Thread.start, list[threading.Thread]()

    def start_but_the_first(thread: threading.Thread) -> None:
        if thread.name == "path" and not refused:  # a pids limit, once
            refused.append(thread)
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_but_the_first)
    try:
        for i, tc in enumerate(state.config.targets, start=1):
            r = _result(tc, f"192.0.2.{i}")
            paths(tc, [r], state.record(tc, [r]))
        _drain(paths)
        assert refused and sorted(SlowTracer.order) == ["192.0.2.1", "192.0.2.2"]
    finally:
        paths.stop()


def test_an_address_is_queued_once(tmp_path: Path) -> None:
    SlowTracer.order = []
    state = AgentState(_config(tmp_path, 1, concurrency=1))
    paths = PathRunner(state, lambda: SlowTracer(hold=0.3))
    try:
        tc = state.config.targets[0]
        r = _result(tc, "192.0.2.1")
        changes: list[Change] = state.record(tc, [r])
        for _ in range(10):
            paths(tc, [r], changes)
        _drain(paths)
        assert SlowTracer.order.count("192.0.2.1") <= 2  # the one running, and at most one queued behind
    finally:
        paths.stop()


@pytest.mark.peers
@pytest.mark.skipif(sys.platform != "linux", reason="raw sockets on Linux")
def test_one_tracer_process_serves_a_batch() -> None:
    tracer = Tracer()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            results = [tracer.trace("127.0.0.1", port, max_hops=2, timeout=0.5) for _ in range(3)]
        assert tracer.started == 1
        statuses = {str(r.status) for r in results}
        # as root: traced; otherwise every answer says why not, from the same process
        assert statuses in ({"terminated_at_destination"}, {"unavailable"})
        assert not [m for m in sys.modules if m.startswith("scapy")]
    finally:
        tracer.close()


@pytest.mark.peers
@pytest.mark.skipif(sys.platform != "linux", reason="raw sockets on Linux")
def test_a_loopback_trace_reads_the_servers_ttls() -> None:
    """The TTLs are sniffed on the interface the route to the address uses (lo here), not the default one."""

    def greet(conn: socket.socket, server: LabServer) -> None:
        conn.sendall(b"220 lab ESMTP\r\n")
        time.sleep(0.3)

    tracer = Tracer()
    try:
        with LabServer(greet) as relay:
            result = tracer.trace("127.0.0.1", relay.port, max_hops=2, timeout=0.5)
    finally:
        tracer.close()
    if result.status.value == "unavailable":
        pytest.skip(f"no raw sockets here: {result.reason}")
    assert result.trace is not None
    assert (result.trace.synack_ttl, result.trace.greeting_ttl) == (64, 64)  # Linux's default, no hop
    assert result.server_distance == 1  # the destination is hop 1, as in the tcp and echo traces
