"""Slow evidence gathered beside the probes: path traces (on every verdict change and every N rounds, in
the path worker process) and the host inventory (processes, trust stores), each on a thread of its own so
probes never wait for them."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Sequence

from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult
from relaywatch.path.client import stop_all, trace_path
from relaywatch.run.config import TargetConfig
from relaywatch.run.state import AgentState, Change

log = logging.getLogger("relaywatch.evidence")


class PathRunner:
    """A scheduler listener: decides which addresses to trace and runs one trace at a time."""

    def __init__(self, state: AgentState) -> None:
        self.state = state
        self._rounds: dict[tuple[str, str], int] = {}
        self._pending: set[tuple[str, str]] = set()
        self._config = state.config
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="path")

    def __call__(self, tc: TargetConfig, results: Sequence[ProbeResult], changes: Sequence[Change]) -> None:
        self._forget(tc.name, {r.record.address for r in results} if results else None)
        settings = self.state.config.path
        if not settings.enabled or not results:  # no results: a worker failure, nothing new to trace
            return
        changed = {c.address for c in changes}
        for r in results:
            if r.record.address is None:
                continue
            key = (tc.name, r.record.address)
            with self._lock:
                n = self._rounds.get(key, 0)
                self._rounds[key] = n + 1
                due = r.record.address in changed or (settings.every and n % settings.every == 0)
                if not due or key in self._pending:
                    continue
                self._pending.add(key)
            self._pool.submit(self._trace, key, tc.target.port, not tc.target.starttls)

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

    def _trace(self, key: tuple[str, str], port: int, implicit_tls: bool) -> None:
        settings = self.state.config.path
        try:
            result = trace_path(key[1], port, settings.max_hops, settings.timeout, implicit_tls)
            self.state.set_path(key[0], key[1], result)
            log.debug("path target=%s address=%s status=%s", key[0], key[1], result.status)
        except Exception:  # evidence gathering must never stop the agent
            log.exception("path trace of %s failed", key)
        finally:
            with self._lock:
                self._pending.discard(key)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
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
