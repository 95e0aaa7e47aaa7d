"""What the agent knows between scrapes: the series per target and address (run/series.py), when each
verdict began, path traces, worker failures per target, and the recent-probe history (run/history.py).

Only configured targets have state: a reload that drops a target drops all of it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relaywatch.analysis.baseline import Baseline
from relaywatch.export.exposition import expose
from relaywatch.export.metrics import host_families, info_families, series_layout, target_families
from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult, Verdict
from relaywatch.path.model import PathResult
from relaywatch.run.config import Config, TargetConfig
from relaywatch.run.history import Entry, History
from relaywatch.run.series import Durations, Series

__all__ = ["AgentState", "Change", "Entry"]


@dataclass(frozen=True, slots=True)
class Change:
    target: str
    address: str
    previous: Verdict | None  # None: first probe of this address
    result: ProbeResult


class AgentState:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._series: dict[str, dict[str, Series]] = {}  # target -> address -> series
        self._since: dict[tuple[str, str], float] = {}  # when the current verdict began
        self._worker_failures: dict[str, int] = {}  # target -> probes lost to the probe worker
        self.paths: dict[tuple[str, str], PathResult] = {}
        self.history = History()
        self.worker_restarts: Callable[[], int] = lambda: 0  # set by the agent
        self.events_write_failures: Callable[[], int] = lambda: 0  # set by the agent
        self.host: HostReport | None = None
        self.baseline: Baseline | None = None  # set by the agent (--state.dir)
        self.durations = Durations()

    @property
    def recent(self) -> Sequence[Entry]:
        return self.history.recent

    @property
    def failures(self) -> Sequence[Entry]:
        return self.history.failures

    def set_config(self, config: Config) -> None:
        with self._lock:
            self.config = config
            names = {t.name for t in config.targets}
            for gone in set(self._series) - names:
                del self._series[gone]
            self._since = {k: v for k, v in self._since.items() if k[0] in names}
            self._worker_failures = {k: v for k, v in self._worker_failures.items() if k in names}
            self.paths = {k: v for k, v in self.paths.items() if k[0] in names}
            for per in self._series.values():  # label names may have changed
                for s in per.values():
                    s.render(self.paths.get((s.target, s.address)), config.layout)

    def sizes(self) -> dict[str, int]:
        """How many entries each per-target table holds (for tests and the soak benchmark)."""
        with self._lock:
            return {
                "series": sum(len(per) for per in self._series.values()),
                "since": len(self._since),
                "paths": len(self.paths),
                "worker_failures": len(self._worker_failures),
            }

    def with_baseline(self, results: Sequence[ProbeResult]) -> list[ProbeResult]:
        """Each result with what changed since this path was last seen (trust on first use), as warnings:
        evidence for the report and the evidence log, never a verdict."""
        if self.baseline is None:
            return list(results)
        out = []
        for r in results:
            changes = self.baseline.observe(r)
            if changes:
                findings = (*r.analysis.findings, *(c.finding() for c in changes))
                r = dataclasses.replace(r, analysis=dataclasses.replace(r.analysis, findings=findings))
            out.append(r)
        return out

    def record(self, tc: TargetConfig, results: Sequence[ProbeResult]) -> list[Change]:
        """Store one round of a target; returns the addresses whose verdict changed (or that are new)."""
        with self._lock:
            if tc.name not in {t.name for t in self.config.targets}:
                return []  # dropped by a reload while it was probed
            old = self._series.get(tc.name, {})
            new: dict[str, Series] = {}
            changed = [c for r in results if (c := self._observe(tc, old, new, r)) is not None]
            for r in results:
                self.durations.observe(r.record.timings.get("total", 0.0))
            for address in set(old) - set(new):  # vanished from DNS
                self._since.pop((tc.name, address), None)
                self.paths.pop((tc.name, address), None)
            self._series[tc.name] = new
        return changed

    def _observe(
        self, tc: TargetConfig, old: dict[str, Series], new: dict[str, Series], r: ProbeResult
    ) -> Change | None:
        address = r.record.address or ""
        key = (tc.name, address)
        s = old.get(address) or new.get(address)
        change = None
        if s is None:
            s = Series(tc.name, address, dict(tc.labels), r)
            change = Change(tc.name, address, None, r)
        elif s.result.verdict is not r.verdict:
            change = Change(tc.name, address, s.result.verdict, r)
        if change is not None or key not in self._since:
            self._since[key] = r.record.started_at.timestamp()
        s.labels = dict(tc.labels)
        s.chain_changed_at = (
            self.baseline.chain_changed_at(r.record.target.raw, address) if self.baseline else None
        )
        s.observe(r)
        s.render(self.paths.get(key), self.config.layout)
        new[address] = s
        s.entry_id = self.history.add(tc.name, r).id
        return change

    def worker_failed(self, tc: TargetConfig, failed: ProbeResult) -> list[Change]:
        """A probe the worker lost (it died or hung): counted, and kept in the history; the target's known
        addresses keep their series and counters, since nothing was learnt about them. Only a target with
        no series yet shows the failure as its verdict (on no address), so it is not simply absent."""
        with self._lock:
            if tc.name not in {t.name for t in self.config.targets}:
                return []
            self._worker_failures[tc.name] = self._worker_failures.get(tc.name, 0) + 1
            if self._series.get(tc.name):
                self.history.add(tc.name, failed)
                return []
        return self.record(tc, [failed])

    def set_path(self, target: str, address: str, result: PathResult) -> None:
        with self._lock:
            s = self._series.get(target, {}).get(address)
            if s is not None:  # not for an address gone meanwhile
                self.paths[(target, address)] = result
                s.render(result, self.config.layout)

    def series(self) -> list[Series]:
        with self._lock:
            return [s for per in self._series.values() for s in per.values()]

    def since(self, target: str, address: str) -> float | None:
        return self._since.get((target, address))

    def find(self, entry_id: int) -> Entry | None:
        """A probe in the history, or the latest of any target (its row links here even once it has left
        the bounded history)."""
        with self._lock:
            found = self.history.find(entry_id)
            if found is not None:
                return found
            for per in self._series.values():
                for s in per.values():
                    if s.entry_id == entry_id:
                        return Entry(entry_id, s.target, s.result)
        return None

    def exposition(self) -> bytes:
        """/metrics, the Pushgateway and the textfile: every series' cached lines, joined."""
        config = self.config
        with self._lock:
            rendered = [s.rendered for per in self._series.values() for s in per.values()]
            labels = {t.name: dict(t.labels) for t in config.targets}
            failures = [(t, labels.get(t, {}), n) for t, n in self._worker_failures.items()]
            durations = Durations(list(self.durations.counts), self.durations.total)  # a copy, read unlocked
        info = info_families(
            ((t.profile.name, t.profile.version) for t in config.targets),
            self.worker_restarts(),
            self.events_write_failures(),
            durations,
        )
        after = [*target_families(failures, config.layout), *host_families(self.host)]
        return expose(info, series_layout(config.layout), rendered, after)
