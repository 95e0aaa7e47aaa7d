"""What the agent knows between scrapes: the last result per target and address, counters, and a
bounded history of recent probes (and, kept apart, of recent failures) like blackbox_exporter's."""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relaywatch.export.exposition import expose
from relaywatch.export.metrics import Series, host_families, info_families, series_layout
from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult, Verdict
from relaywatch.path.model import PathResult
from relaywatch.run.config import Config, TargetConfig

HISTORY = 100


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    target: str
    result: ProbeResult


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
        self._ids = itertools.count(1)
        self.paths: dict[tuple[str, str], PathResult] = {}
        self.worker_restarts: Callable[[], int] = lambda: 0  # set by the agent
        self.host: HostReport | None = None
        self.recent: collections.deque[Entry] = collections.deque(maxlen=HISTORY)
        self.failures: collections.deque[Entry] = collections.deque(maxlen=HISTORY)

    def set_config(self, config: Config) -> None:
        with self._lock:
            self.config = config
            names = {t.name for t in config.targets}
            for gone in set(self._series) - names:
                del self._series[gone]
            self.paths = {k: v for k, v in self.paths.items() if k[0] in names}
            for per in self._series.values():  # label names may have changed
                for s in per.values():
                    s.render(self.paths.get((s.target, s.address)), config.label_names)

    def record(self, tc: TargetConfig, results: Sequence[ProbeResult]) -> list[Change]:
        """Store one round of a target; returns the addresses whose verdict changed (or that are new)."""
        changed: list[Change] = []
        with self._lock:
            old = self._series.get(tc.name, {})
            new: dict[str, Series] = {}
            for r in results:
                address = r.record.address or ""
                s = old.get(address)
                if s is None:
                    s = Series(tc.name, address, dict(tc.labels), r)
                    changed.append(Change(tc.name, address, None, r))
                elif s.result.verdict is not r.verdict:
                    changed.append(Change(tc.name, address, s.result.verdict, r))
                if s.result.verdict is not r.verdict or (tc.name, address) not in self._since:
                    self._since[(tc.name, address)] = r.record.started_at.timestamp()
                s.labels = dict(tc.labels)
                s.observe(r)
                s.render(self.paths.get((tc.name, address)), self.config.label_names)
                new[address] = s
                entry = Entry(next(self._ids), tc.name, r)
                s.entry_id = entry.id
                self.recent.append(entry)
                if r.verdict is not Verdict.OK:
                    self.failures.append(entry)
            for address in set(old) - set(new):  # vanished from DNS
                self._since.pop((tc.name, address), None)
                self.paths.pop((tc.name, address), None)
            if tc.name in {t.name for t in self.config.targets}:
                self._series[tc.name] = new
        return changed

    def set_path(self, target: str, address: str, result: PathResult) -> None:
        with self._lock:
            s = self._series.get(target, {}).get(address)
            if s is not None:  # not for an address gone meanwhile
                self.paths[(target, address)] = result
                s.render(result, self.config.label_names)

    def series(self) -> list[Series]:
        with self._lock:
            return [s for per in self._series.values() for s in per.values()]

    def since(self, target: str, address: str) -> float | None:
        return self._since.get((target, address))

    def find(self, entry_id: int) -> Entry | None:
        """A probe in the history, or the latest of any target (its row links here even once it has left
        the bounded history)."""
        with self._lock:
            for e in itertools.chain(self.recent, self.failures):
                if e.id == entry_id:
                    return e
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
        info = info_families(
            ((t.profile.name, t.profile.version) for t in config.targets), self.worker_restarts()
        )
        return expose(info, series_layout(config.label_names), rendered, host_families(self.host))
