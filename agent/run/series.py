"""The per-target accumulator: what the agent keeps per target and address between scrapes (the last
result, the probe counters, the duration histogram) and its exposition lines, rendered when it changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relaywatch.export.exposition import render
from relaywatch.export.metrics import BUCKETS, Layout, families, path_families
from relaywatch.model import ProbeResult
from relaywatch.path.model import PathResult


@dataclass
class Series:
    """One target and address. Counters only grow: a series is replaced only when its address leaves DNS."""

    target: str
    address: str
    labels: Mapping[str, str]
    result: ProbeResult
    probes_by_verdict: dict[str, int] = field(default_factory=dict)
    durations: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    duration_sum: float = 0.0
    entry_id: int = 0  # the probe in the agent's history that produced `result`
    rendered: dict[str, bytes] = field(default_factory=dict)  # exposition lines per family, see exposition.py

    def render(self, path: PathResult | None, layout: Layout = Layout()) -> None:
        """Called whenever the result or the path changes; scrapes then only join these lines."""
        key = {(self.target, self.address): path} if path else {}
        self.rendered = render([*families([self], layout), *path_families([self], key, layout)])

    def observe(self, result: ProbeResult) -> None:
        self.result = result
        v = str(result.verdict)
        self.probes_by_verdict[v] = self.probes_by_verdict.get(v, 0) + 1
        total = result.record.timings.get("total", 0.0)
        self.duration_sum += total
        for i, bound in enumerate(BUCKETS):
            if total <= bound:
                self.durations[i] += 1
                break
        else:
            self.durations[-1] += 1
