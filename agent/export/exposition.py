"""The Prometheus text format (0.0.4), rendered per series when its result changes and only joined at
scrape time: a scrape of 1,000 addresses is a string join, not 50,000 samples formatted again.

The metric families themselves come from metrics.py, the one definition of every series."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from relaywatch.export.families import Metric, float_to_go_string

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_go: Callable[[float], str] = float_to_go_string  # Go's float formatting, as Prometheus writes it (untyped)


_SPECIAL = re.compile(r'[\\\n"]')


@functools.lru_cache(maxsize=1024)  # the same targets, addresses and names in every series (values: 64 chars)
def _escape(value: str) -> str:
    if _SPECIAL.search(value) is None:  # nearly every value: one scan, no copies
        return value
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@functools.lru_cache(maxsize=1024)
def _line_format(name: str, names: tuple[str, ...]) -> tuple[tuple[int, ...], str]:
    """One sample line of a family: where each label value goes, its labels sorted as client_python writes
    them, and the format of the line (the escaped values, then the value)."""
    order = tuple(sorted(range(len(names)), key=names.__getitem__))
    labels = ",".join(f'{names[i]}="{{}}"' for i in order)
    return order, f"{name}{{{{{labels}}}}} {{}}\n" if names else f"{name} {{}}\n"


def header(metric: Metric) -> str:
    name = metric.name + "_total" if metric.type == "counter" else metric.name
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    kind = {"stateset": "gauge", "info": "gauge", "unknown": "untyped"}.get(metric.type, metric.type)
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def samples(metric: Metric) -> str:
    lines = []
    for name, names, values, value in metric.rows:
        order, fmt = _line_format(name, names)
        lines.append(fmt.format(*[_escape(values[i]) for i in order], _go(value)))
    return "".join(lines)


def render(metrics: Iterable[Metric]) -> dict[str, bytes]:
    """Family name -> its sample lines, encoded, for one series (cached until the series changes)."""
    return {m.name: samples(m).encode() for m in metrics}


@functools.lru_cache(maxsize=16)
def _headers(layout: tuple[Metric, ...]) -> tuple[bytes, ...]:
    """The HELP and TYPE lines of a layout's families (series_layout: the same tuple per config)."""
    return tuple(header(m).encode() for m in layout)


def expose(
    before: Iterable[Metric],
    layout: Sequence[Metric],
    rendered: Sequence[Mapping[str, bytes]],
    after: Iterable[Metric],
) -> bytes:
    """Whole families first (`before`), then the per-series families in `layout` order with each series'
    cached lines, then `after`."""
    out = [(header(m) + samples(m)).encode() for m in before]
    for m, head in zip(layout, _headers(tuple(layout)), strict=True):
        out.append(head)
        out.extend(r.get(m.name, b"") for r in rendered)
    out.extend((header(m) + samples(m)).encode() for m in after)
    return b"".join(out)
