"""Slow evidence gathered beside the probes: path traces (on every verdict change, on an address's first
probe and every N rounds, in path worker processes) and the host inventory (processes, trust stores), on
threads of their own so probes never wait for them."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult
from relaywatch.path.client import Tracer, stop_all
from relaywatch.run.config import TargetConfig
from relaywatch.run.state import AgentState, Change

log = logging.getLogger("relaywatch.evidence")
URGENT, ROUTINE = 0, 1  # a verdict change or a new address; the every-N-rounds trace
MAX_QUEUED = 10_000  # routine traces beyond this wait for their next turn (urgent ones always queue)
IDLE_S = 5.0  # a tracing thread (and its tracer process) ends after this long without work
# Waiting traces per tracing thread before another starts (up to path.concurrency): a tracer process costs
# about 22 MB and 0.3 s CPU to start (scapy) against 0.15 s a trace once running, so a few traces are left
# to the one that runs (seconds); a burst (new addresses after a start or a DNS change) gets more.
BACKLOG_PER_TRACER = 4


@dataclass(frozen=True, slots=True)
class _Job:
    key: tuple[str, str]
    port: int
    implicit_tls: bool


class PathRunner:
    """A scheduler listener: decides which addresses to trace, queues them (urgent ones first: new
    addresses and verdict changes before routine re-traces; first come, first served within each) and runs
    at most `path.concurrency` traces at once, another one only when more than BACKLOG_PER_TRACER wait per
    running one. Each tracing thread holds one tracer process (path/client.py) for as long as it has work,
    so a burst (1,000 new addresses) pays scapy's import once per thread, not once per trace, and no tracer
    process outlives the burst by more than IDLE_S."""

    def __init__(self, state: AgentState, tracer: Callable[[], Tracer] = Tracer) -> None:
        self.state = state
        self.tracer = tracer
        self._rounds: dict[tuple[str, str], int] = {}
        self._queue: list[tuple[int, int, _Job]] = []
        self._queued: set[tuple[str, str]] = set()  # queued or being traced
        self._seq = itertools.count()
        self._config = state.config
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._threads = 0
        self._stopped = False
        self.running = 0  # traces in progress
        self.most_running = 0  # the highest `running` has been (tests)

    def __call__(self, tc: TargetConfig, results: Sequence[ProbeResult], changes: Sequence[Change]) -> None:
        self._forget(tc.name, {r.record.address for r in results} if results else None)
        settings = self.state.config.path
        if not settings.enabled or not results:  # no results: a worker failure, nothing new to trace
            return
        changed = {c.address for c in changes}  # includes an address's first probe (previous is None)
        for r in results:
            if r.record.address is None:
                continue
            key = (tc.name, r.record.address)
            with self._lock:
                n = self._rounds.get(key, 0)
                self._rounds[key] = n + 1
                urgent = r.record.address in changed
                due = urgent or (settings.every and n % settings.every == 0)
                if not due or key in self._queued or self._stopped:
                    continue
                if not urgent and len(self._queue) >= MAX_QUEUED:
                    continue
                self._queued.add(key)
                job = _Job(key, tc.target.port, not tc.target.starttls)
                heapq.heappush(self._queue, (URGENT if urgent else ROUTINE, next(self._seq), job))
                # an urgent trace behind a busy tracer waits for the trace in flight (at most its deadline,
                # 3 x path.timeout + 15 s): evidence, not the verdict, and it is next in the queue
                backlog = len(self._queue) > BACKLOG_PER_TRACER * self._threads
                if self._threads < settings.concurrency and (self._threads == 0 or backlog):
                    self._start_slot()
                else:
                    self._work.notify()

    def _start_slot(self) -> None:
        """Under the lock. A thread that cannot start leaves no count behind: the next trace queued tries
        again, and the ones waiting are not stranded behind a thread that does not exist."""
        self._threads += 1
        try:
            threading.Thread(target=self._slot, name="path", daemon=True).start()
        except RuntimeError as exc:  # out of threads (a container's pids limit)
            self._threads -= 1
            log.error("cannot start a path tracing thread: %s", exc)

    def _forget(self, target: str, current: set[str | None] | None) -> None:
        """Addresses of `target` that left DNS (None: not known this round), and targets a reload dropped."""
        with self._lock:
            if current is not None:
                for key in [k for k in self._rounds if k[0] == target and k[1] not in current]:
                    del self._rounds[key]
            if self._config is not self.state.config:
                self._config = self.state.config
                names = {t.name for t in self._config.targets}
                self._rounds = {k: v for k, v in self._rounds.items() if k[0] in names}

    def _next(self) -> _Job | None:
        """Under the lock: the next job, waiting up to IDLE_S; None: idle (or stopping), end this thread."""
        if not self._queue and not self._stopped:
            self._work.wait(IDLE_S)
        if not self._queue or self._stopped:
            self._threads -= 1
            return None
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        return heapq.heappop(self._queue)[2]

    def _slot(self) -> None:
        tracer = self.tracer()
        try:
            while True:
                with self._lock:
                    job = self._next()
                if job is None:
                    return
                try:
                    self._trace(tracer, job)
                finally:
                    with self._lock:
                        self.running -= 1
                        self._queued.discard(job.key)
        finally:
            tracer.close()

    def _trace(self, tracer: Tracer, job: _Job) -> None:
        settings = self.state.config.path
        target, address = job.key
        try:
            result = tracer.trace(address, job.port, settings.max_hops, settings.timeout, job.implicit_tls)
            self.state.set_path(target, address, result)
            log.debug("path target=%s address=%s status=%s", target, address, result.status)
        except Exception:  # evidence gathering must never stop the agent
            log.exception("path trace of %s failed", job.key)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._queue.clear()
            self._work.notify_all()
        stop_all()


class HostWatch:
    def __init__(self, state: AgentState, inventory: Callable[[], HostReport]) -> None:
        self.state, self.inventory = state, inventory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="host", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.state.host = self.inventory()
            except Exception:
                log.exception("host inventory failed")
            self._stop.wait(self.state.config.host_interval)

    def stop(self) -> None:
        self._stop.set()
