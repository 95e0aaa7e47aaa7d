"""The metric families the agent builds (gauge, counter, histogram), with prometheus_client's semantics
and none of its weight: importing prometheus_client loads its registry, its HTTP and WSGI servers and the
email package (4.4 MB of the agent's 15 MB of Python objects, measured), for three small classes and a
float format. Samples are prometheus_client's shape (a tuple with the same fields), so its own exposition
and parser read these families unchanged (tests/test_unit_exposition.py compares both)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    exemplar: Any = None
    native_histogram: Any = None


class Metric:
    def __init__(self, name: str, documentation: str, typ: str, unit: str = "") -> None:
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name, self.documentation, self.type, self.unit = name, documentation, typ, unit
        self.samples: list[Sample] = []

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, {self.type}, {len(self.samples)} samples)"


class GaugeMetricFamily(Metric):
    def __init__(
        self,
        name: str,
        documentation: str,
        value: float | None = None,
        labels: Sequence[str] = (),
        unit: str = "",
    ) -> None:
        super().__init__(name, documentation, "gauge", unit)
        self._labelnames = tuple(labels)
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.samples.append(Sample(self.name, dict(zip(self._labelnames, labels, strict=False)), value))


class CounterMetricFamily(Metric):
    """The family is named without `_total`; its samples carry it (as in prometheus_client)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        value: float | None = None,
        labels: Sequence[str] = (),
        unit: str = "",
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, "counter", unit)
        self._labelnames = tuple(labels)
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        labelled = dict(zip(self._labelnames, labels, strict=False))
        self.samples.append(Sample(self.name + "_total", labelled, value))


class HistogramMetricFamily(Metric):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (), unit: str = "") -> None:
        super().__init__(name, documentation, "histogram", unit)
        self._labelnames = tuple(labels)

    def add_metric(
        self, labels: Sequence[str], buckets: Sequence[tuple[str, float]], sum_value: float
    ) -> None:
        """buckets: (le, cumulative count), sorted, +Inf last (it is the count)."""
        base = list(zip(self._labelnames, labels, strict=False))
        for le, value in buckets:
            self.samples.append(Sample(self.name + "_bucket", dict([*base, ("le", le)]), value))
        if float(buckets[0][0]) >= 0:
            self.samples.append(Sample(self.name + "_count", dict(base), buckets[-1][1]))
            self.samples.append(Sample(self.name + "_sum", dict(base), sum_value))


def float_to_go_string(d: float) -> str:
    """A float as Go (and so Prometheus) writes it: +Inf, -Inf, NaN, exponents from 1e+07."""
    d = float(d)
    if d == math.inf:
        return "+Inf"
    if d == -math.inf:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
