"""The metric families the agent builds (gauge, counter, histogram), with prometheus_client's semantics
and none of its weight: importing prometheus_client loads its registry, its HTTP and WSGI servers and the
email package (4.4 MB of the agent's 15 MB of Python objects, measured), for three small classes and a
float format. Samples are prometheus_client's shape (a tuple with the same fields), so its own exposition
and parser read these families unchanged (tests/test_unit_exposition.py compares both)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*\Z")


@functools.lru_cache(maxsize=512)
def _valid_name(name: str) -> bool:
    """Family names are the code's constants, and every exposition makes its families anew: checked once."""
    return _NAME.match(name) is not None


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    exemplar: Any = None
    native_histogram: Any = None


class Metric:
    def __init__(
        self, name: str, documentation: str, typ: str, unit: str = "", labels: Sequence[str] = ()
    ) -> None:
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if not _valid_name(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.name, self.documentation, self.type, self.unit = name, documentation, typ, unit
        self._labelnames = tuple(labels)
        # (sample name, label names, label values, value): what exposition.py writes, with no dict per
        # sample; `samples` is the same in prometheus_client's shape, for its exposition and the tests
        self.rows: list[tuple[str, tuple[str, ...], tuple[str, ...], float]] = []

    @property
    def samples(self) -> list[Sample]:
        return [
            Sample(name, dict(zip(names, values, strict=True)), v) for name, names, values, v in self.rows
        ]

    def _fit(self, values: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The label names and values of a sample: values beyond the names are dropped, and names beyond
        the values left out (what dict(zip()) does in prometheus_client)."""
        names, values = self._labelnames, tuple(values)
        if len(values) != len(names):
            n = min(len(names), len(values))
            names, values = names[:n], values[:n]
        return names, values


class _OneValue(Metric):
    """A gauge or a counter: one sample per label set, named `name + suffix`."""

    typ, suffix = "", ""

    def __init__(
        self,
        name: str,
        documentation: str,
        value: float | None = None,
        labels: Sequence[str] = (),
        unit: str = "",
    ) -> None:
        super().__init__(
            name.removesuffix(self.suffix) if self.suffix else name, documentation, self.typ, unit, labels
        )
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.rows.append((self.name + self.suffix, *self._fit(labels), value))


class GaugeMetricFamily(_OneValue):
    typ = "gauge"


class CounterMetricFamily(_OneValue):
    """The family is named without `_total`; its samples carry it (as in prometheus_client)."""

    typ, suffix = "counter", "_total"


class HistogramMetricFamily(Metric):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = (), unit: str = "") -> None:
        super().__init__(name, documentation, "histogram", unit, labels)

    def add_metric(
        self, labels: Sequence[str], buckets: Sequence[tuple[str, float]], sum_value: float
    ) -> None:
        """buckets: (le, cumulative count), sorted, +Inf last (it is the count)."""
        names, values = self._fit(labels)
        bucket = (*names, "le")
        for le, value in buckets:
            self.rows.append((self.name + "_bucket", bucket, (*values, le), value))
        if float(buckets[0][0]) >= 0:
            self.rows.append((self.name + "_count", names, values, buckets[-1][1]))
            self.rows.append((self.name + "_sum", names, values, sum_value))


def float_to_go_string(d: float) -> str:
    """A float as Go (and so Prometheus) writes it: +Inf, -Inf, NaN, exponents from 1e+07."""
    d = float(d)
    if d == 1.0:  # most samples are 1 or 0: a state set's members, info series, flags
        return "1.0"
    if d == 0.0:
        return "0.0" if math.copysign(1.0, d) > 0 else "-0.0"
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
