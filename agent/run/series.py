"""The per-target accumulator: what the agent keeps per target and address between scrapes (the last
result, the probe counters, the duration histogram) and its exposition lines, rendered at the first
scrape after a change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relaywatch.export.exposition import render
from relaywatch.export.metrics import BUCKETS, Layout, families, path_families
from relaywatch.model import ProbeResult
from relaywatch.path.model import PathResult


@dataclass
class Durations:
    """Probe durations as a histogram (BUCKETS, then +Inf): one per series (a detail family) and one for
    every probe of the agent (per host, not per target: a footprint choice)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bucket_of(seconds)] += 1
        self.total += seconds


@dataclass
class Series:
    """One target and address. Counters only grow: a series is replaced only when its address leaves DNS."""

    target: str
    address: str
    labels: Mapping[str, str]
    result: ProbeResult
    probes_by_verdict: dict[str, int] = field(default_factory=dict)
    durations: Durations = field(default_factory=Durations)
    entry_id: int = 0  # the probe in the agent's history that produced `result`
    chain_changed_at: float | None = None  # when the baseline last saw this path's chain change
    _lines: dict[str, bytes] = field(
        default_factory=dict, init=False, repr=False
    )  # exposition lines per family, see exposition.py
    _stale: tuple[PathResult | None, Layout] | None = field(
        default=None, init=False, repr=False
    )  # what the next read renders with, if due

    def render(self, path: PathResult | None, layout: Layout = Layout()) -> None:
        """Called whenever the result or the path changes. Only marks the lines stale: they are rendered
        when next read (a scrape), never per probe, since probes usually outnumber scrapes."""
        self._stale = (path, layout)

    @property
    def rendered(self) -> dict[str, bytes]:
        """The exposition lines per family; read under the owner's lock (state.py), as render() is."""
        if self._stale is not None:
            path, layout = self._stale
            key = {(self.target, self.address): path} if path else {}
            self._lines = render([*families([self], layout), *path_families([self], key, layout)])
            self._stale = None
        return self._lines

    def observe(self, result: ProbeResult) -> None:
        self.result = result
        v = str(result.verdict)
        self.probes_by_verdict[v] = self.probes_by_verdict.get(v, 0) + 1
        self.durations.observe(result.record.timings.get("total", 0.0))


def bucket_of(seconds: float) -> int:
    """The histogram bucket (BUCKETS, then +Inf) a probe duration falls in."""
    return next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
