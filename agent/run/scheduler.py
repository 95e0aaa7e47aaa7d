"""Runs every target on its own jittered interval under a concurrency limit. A target is never probed
twice at once, so a slow or hostile one only occupies its own slot; a verdict change triggers a prompt
confirmation probe."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence

from relaywatch.analysis.profile_ref import ProfileRef
from relaywatch.model import (
    Analysis,
    Finding,
    ProbeFailure,
    ProbeRecord,
    ProbeResult,
    Severity,
    StartTLS,
    StartTLSState,
    Verdict,
)
from relaywatch.probe.limits import Limits
from relaywatch.probe.options import ProbeOptions
from relaywatch.run.config import TargetConfig
from relaywatch.run.state import AgentState, Change
from relaywatch.target import Target

# how a target gets probed: the probe worker in the agent (client.Worker.probe), in-process in tests
Prober = Callable[[Target, ProfileRef, ProbeOptions], list[ProbeResult]]
# the same without a waiting thread: the last argument is called with the results, or with why there are none
Done = Callable[[list[ProbeResult] | None, BaseException | None], None]
AsyncProber = Callable[[Target, ProfileRef, ProbeOptions, Done], None]
Listener = Callable[[TargetConfig, Sequence[ProbeResult], Sequence[Change]], None]

log = logging.getLogger("relaywatch.scheduler")
CONFIRM_AFTER = 5.0


def options_for(tc: TargetConfig, inspect: bool = False) -> ProbeOptions:
    """inspect: also find the local process holding the far end (a psutil scan, so only when it matters)."""
    return ProbeOptions(
        inspect_local_peer=inspect,
        limits=Limits().with_timeout(tc.timeout),
        ehlo_name=tc.ehlo_name,
        address_family=tc.address_family,
        dns=tc.dns,
    )


class Scheduler:
    """probe_async (the agent's probe worker): a probe occupies no thread of this process while it runs,
    its results are handled where they arrive (the worker client's reader thread), and `expire` runs at
    least once a second to fail requests past their deadline. Without it, `probe` runs on a pool thread."""

    def __init__(
        self,
        state: AgentState,
        probe: Prober,
        listeners: Sequence[Listener] = (),
        probe_async: AsyncProber | None = None,
        expire: Callable[[], None] = lambda: None,
    ) -> None:
        self.state = state
        self.probe = probe
        self.probe_async = probe_async
        self.expire = expire
        self.listeners = list(listeners)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._queue: list[tuple[float, int, str]] = []
        self._seq = 0
        self._generation = 0  # bumped by reschedule(): a probe of an older one does not queue itself again
        self._inflight: set[str] = set()
        self._confirm: set[str] = set()  # targets whose next probe confirms a verdict change
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=state.config.concurrency, thread_name_prefix="probe"
        )
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> None:
        self.reschedule()
        self._thread.start()

    def reschedule(self) -> None:
        """After start or reload: every target due soon, spread over a second to avoid a burst."""
        with self._lock:
            self._queue.clear()
            self._generation += 1
            self._confirm &= {tc.name for tc in self.state.config.targets}
            for tc in self.state.config.targets:
                self._push(time.monotonic() + random.uniform(0, 1.0), tc.name)
        self._wake.set()

    def _push(self, due: float, name: str) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, name))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            limit = self.state.config.concurrency
            with self._lock:
                now = time.monotonic()
                wait = self._queue[0][0] - now if self._queue else 1.0
                due: list[str] = []
                while self._queue and self._queue[0][0] <= now and len(self._inflight) + len(due) < limit:
                    due.append(heapq.heappop(self._queue)[2])
                if self._queue and self._queue[0][0] <= now:
                    wait = 1.0  # at the limit: a probe's end wakes this loop
            targets = {t.name: t for t in self.state.config.targets}
            for name in due:
                tc = targets.get(name)
                if tc is None or name in self._inflight:
                    continue
                self._inflight.add(name)
                if self.probe_async is not None:
                    self._start(tc, self._generation)
                else:
                    self._pool.submit(self._run, tc, self._generation)
            self.expire()
            self._wake.wait(max(0.01, min(wait, 1.0)))
            self._wake.clear()

    def _start(self, tc: TargetConfig, generation: int) -> None:
        assert self.probe_async is not None
        confirming = tc.name in self._confirm
        self._confirm.discard(tc.name)

        def done(results: list[ProbeResult] | None, error: BaseException | None) -> None:
            self._finish(tc, generation, results, error)

        try:
            self.probe_async(tc.target, tc.profile, options_for(tc, inspect=confirming), done)
        except Exception as exc:  # not even sent (the agent is stopping, the worker cannot start)
            self._finish(tc, generation, None, exc)

    def _run(self, tc: TargetConfig, generation: int) -> None:
        confirming = tc.name in self._confirm
        self._confirm.discard(tc.name)
        try:
            results, error = self.probe(tc.target, tc.profile, options_for(tc, inspect=confirming)), None
        except Exception as exc:
            results, error = None, exc
        self._finish(tc, generation, results, error)

    def _finish(
        self,
        tc: TargetConfig,
        generation: int,
        probed: list[ProbeResult] | None,
        error: BaseException | None,
    ) -> None:
        """A probe's end: its results recorded (or the failure), listeners told, the next probe queued."""
        try:
            results: Sequence[ProbeResult]
            try:
                if probed is None:
                    raise error or RuntimeError("no results")
                results = self.state.with_baseline(probed)
                changes = self.state.record(tc, results)
            except Exception as exc:  # the worker died or hung: nothing learnt about the target's addresses
                log.error("probe of %s failed: %s", tc.name, exc)
                results, changes = (), self.state.worker_failed(tc, failed_result(tc, str(exc)))
            for r in results:
                log.debug("probe target=%s address=%s verdict=%s", tc.name, r.record.address, r.verdict)
            for listener in self.listeners:
                listener(tc, results, changes)
            confirm = any(c.previous is not None for c in changes)
            if confirm:
                self._confirm.add(tc.name)
            delay = min(CONFIRM_AFTER, tc.interval) if confirm else tc.interval * random.uniform(0.9, 1.1)
        except Exception:  # a bug must not stop the schedule of this target
            log.exception("probe of %s failed", tc.name)
            delay = tc.interval
        finally:
            self._inflight.discard(tc.name)
        with self._lock:
            if generation == self._generation:  # else reschedule() has queued it already
                self._push(time.monotonic() + delay, tc.name)
        self._wake.set()


def failed_result(tc: TargetConfig, message: str) -> ProbeResult:
    """A probe that produced nothing (the worker died on it, or hung): for the history, and the verdict of a
    target that has none yet (state.worker_failed)."""
    now = dt.datetime.now(dt.UTC)
    state = StartTLSState.UNKNOWN if tc.target.starttls else StartTLSState.NOT_APPLICABLE
    failure = ProbeFailure("worker", "internal", message)
    record = ProbeRecord(tc.target, None, now, {"total": 0.0}, (), StartTLS(state), None, failure)
    finding = Finding(
        "probe_worker_failed",
        Severity.CRITICAL,
        f"the probe worker did not complete the probe: {message}",
        Verdict.PROTOCOL_ERROR,
    )
    analysis = Analysis(
        tc.profile.name, tc.profile.version, now, Verdict.PROTOCOL_ERROR, (finding,), (), (), None, None
    )
    return ProbeResult(record, analysis)
