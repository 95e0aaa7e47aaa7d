"""Prometheus metric families derived from probe results (client_python custom-collector style).

One collector per concern (probe and verdict, TLS, chain, timings, path); each declares its families and
fills them from every series. The label names of the families are the one list of names a configured
target label may not take (`reserved_label_names`).

Label values taken from certificates are attacker-controlled: sanitized and cut to 64 characters, and
every family has a fixed number of series per target and address whatever a server sends."""

from __future__ import annotations

import enum
import functools
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relaywatch import __version__
from relaywatch.export.families import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from relaywatch.host.model import HostReport
from relaywatch.model import DaneStatus, ProbeResult, StartTLSState, Verdict
from relaywatch.path.model import PathResult, PathStatus
from relaywatch.probe.limits import Phase

MAX_LABEL = 64
MAX_POSITIONS = 10  # certificates exported per chain with detail metrics
DEFAULT_POSITIONS = 3  # leaf, issuer, root: what the dashboard's chain table and the alert rules use
PHASES = tuple(str(p) for p in Phase if p is not Phase.LOCAL_PEER)
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# labels Prometheus itself adds or gives a meaning (target labels, histogram and summary samples)
PROMETHEUS_LABELS = frozenset({"instance", "job", "le", "quantile"})
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def label(value: object) -> str:
    """Printable ASCII only, at most 64 characters: safe in any exposition format, bounded in size."""
    text = _UNSAFE.sub("?", str(value))
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "~"


class DurationsView(Protocol):
    """A histogram of probe durations: a count per BUCKETS bound, then +Inf, and their sum."""

    @property
    def counts(self) -> Sequence[int]: ...
    @property
    def total(self) -> float: ...


class SeriesView(Protocol):
    """What the collectors read of one target and address (the accumulator is run/series.py)."""

    @property
    def target(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def result(self) -> ProbeResult: ...
    @property
    def probes_by_verdict(self) -> Mapping[str, int]: ...
    @property
    def durations(self) -> DurationsView: ...
    @property
    def chain_changed_at(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Layout:
    """The shape of every target's series: the configured target label names, and whether the detail
    families are on (`metrics: {detail: true}`). Default: only what a dashboard panel or an alert rule uses,
    at most 25 series per target address."""

    label_names: tuple[str, ...] = ()
    detail: bool = False


class _Discarded:
    """A detail family while detail metrics are off: takes samples, exports nothing."""

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        pass


class _DiscardedGauge(_Discarded, GaugeMetricFamily):
    pass


class _DiscardedCounter(_Discarded, CounterMetricFamily):
    pass


class _DiscardedHistogram(_Discarded, HistogramMetricFamily):
    pass


class StateSet:
    """A gauge with one series per member of an enum, 1 for the current member and 0 for the others: the
    verdict, the STARTTLS state and the path status are each exported this way."""

    def __init__(
        self, name: str, doc: str, names: Sequence[str], state: str, members: type[enum.Enum], keep: bool
    ) -> None:
        kind = GaugeMetricFamily if keep else _DiscardedGauge
        self.family = kind(name, doc, labels=[*names, state])
        self.members = _members(members)

    def add(self, base: Sequence[str], current: enum.Enum | None) -> None:
        for m, value in self.members:
            self.family.add_metric([*base, value], 1.0 if m is current else 0.0)


@functools.cache
def _members(kind: type[enum.Enum]) -> tuple[tuple[enum.Enum, str], ...]:
    """An enum's members and their label values, in order: every state set of every render iterates them."""
    return tuple((m, str(m.value)) for m in kind)


class _Families:
    """Makes the families of one exposition: the label names every per-series family starts with, a base of
    label values per series, and a record of every label name handed out (see reserved_label_names)."""

    def __init__(self, layout: Layout, per_address: bool = True) -> None:
        self.extra = layout.label_names
        self.detail = layout.detail
        self.names = ("target", "address", *self.extra) if per_address else ("target", *self.extra)
        self.used: set[str] = set(self.names)
        self._bases: dict[int, tuple[SeriesView, list[str]]] = {}

    def _labels(self, more: Sequence[str]) -> list[str]:
        self.used.update(more)
        return [*self.names, *more]

    def gauge(self, name: str, doc: str, more: Sequence[str] = (), detail: bool = False) -> GaugeMetricFamily:
        kind = _DiscardedGauge if detail and not self.detail else GaugeMetricFamily
        return kind(name, doc, labels=self._labels(more))

    def counter(
        self, name: str, doc: str, more: Sequence[str] = (), detail: bool = False
    ) -> CounterMetricFamily:
        kind = _DiscardedCounter if detail and not self.detail else CounterMetricFamily
        return kind(name, doc, labels=self._labels(more))

    def histogram(self, name: str, doc: str, detail: bool = False) -> HistogramMetricFamily:
        kind = _DiscardedHistogram if detail and not self.detail else HistogramMetricFamily
        return kind(name, doc, labels=self._labels(()), unit="")

    def state_set(
        self, name: str, doc: str, state: str, members: type[enum.Enum], detail: bool = False
    ) -> StateSet:
        keep = self.detail or not detail
        return StateSet(name, doc, self._labels((state,))[:-1], state, members, keep)

    def base(self, s: SeriesView) -> list[str]:
        """The series' own label values, sanitized once per exposition (every collector asks for them);
        callers copy it (`[*base, ...]`) and never change it."""
        known = self._bases.get(id(s))
        if known is None or known[0] is not s:
            values = [label(s.target), label(s.address), *(label(s.labels.get(n, "")) for n in self.extra)]
            known = self._bases[id(s)] = (s, values)
        return known[1]


Collector = Callable[[_Families, Sequence[SeriesView]], list[Metric]]


def _probe(f: _Families, series: Sequence[SeriesView]) -> list[Metric]:
    success = f.gauge("relaywatch_probe_success", "1 when the probe completed a TLS session, 0 otherwise")
    verdict = f.state_set(
        "relaywatch_verdict", "Current verdict of the path to the target (state set)", "verdict", Verdict
    )
    intercepted = f.gauge(
        "relaywatch_interception_detected", "1 when the TLS session is re-signed on the path"
    )
    interceptor = f.gauge(
        "relaywatch_interceptor_info",
        "The product that intercepts, while intercepted",
        ["product", "vendor", "kind", "ca_subject_cn", "ca_spki_sha256"],
    )
    starttls = f.state_set(
        "relaywatch_starttls_state",
        "STARTTLS state seen by the last probe (state set)",
        "state",
        StartTLSState,
    )
    for s in series:
        r, a, base = s.result.record, s.result.analysis, f.base(s)
        completed = r.tls is not None and (r.failure is None or r.failure.phase == "post_tls")
        success.add_metric(base, 1.0 if completed else 0.0)
        verdict.add(base, a.verdict)
        intercepted.add_metric(base, 1.0 if a.verdict is Verdict.INTERCEPTED else 0.0)
        i = a.interceptor
        if i is not None and a.verdict is Verdict.INTERCEPTED:
            values = (i.product, i.vendor, i.kind, i.ca_subject_cn, i.ca_spki_sha256)
            interceptor.add_metric([*base, *map(label, values)], 1.0)
        starttls.add(base, r.starttls.state)
    return [success, verdict.family, intercepted, interceptor, starttls.family]


def _tls(f: _Families, series: Sequence[SeriesView]) -> list[Metric]:
    version = f.gauge("relaywatch_tls_version_info", "TLS version negotiated by the last probe", ["version"])
    cipher = f.gauge(
        "relaywatch_tls_cipher_info", "TLS cipher negotiated by the last probe", ["cipher"], detail=True
    )
    for s in series:
        tls = s.result.record.tls
        if tls is not None:
            version.add_metric([*f.base(s), label(tls.version)], 1.0)
            cipher.add_metric([*f.base(s), label(tls.cipher)], 1.0)
    return [version, cipher]


def _chain(f: _Families, series: Sequence[SeriesView]) -> list[Metric]:
    chain = f.gauge(
        "relaywatch_chain_certificate_info",
        "Certificates presented, leaf first (at most 10)",
        ["position", "subject_cn", "issuer_cn", "spki_sha256", "expected"],
    )
    not_after = f.gauge(
        "relaywatch_certificate_not_after_timestamp_seconds",
        "Expiry of each presented certificate, Unix time",
        ["position"],
    )
    changed = f.gauge(
        "relaywatch_chain_changed_timestamp_seconds",
        "When the chain of this path last changed from what the baseline had seen (trust on first use)",
    )
    positions = MAX_POSITIONS if f.detail else DEFAULT_POSITIONS
    for s in series:
        base = f.base(s)
        if s.chain_changed_at is not None:
            changed.add_metric(base, s.chain_changed_at)
        for c in s.result.analysis.chain[:positions]:
            pos, expected = str(c.position), "true" if c.expected else "false"
            chain.add_metric(
                [*base, pos, label(c.subject_cn), label(c.issuer_cn), c.spki_sha256, expected], 1.0
            )
            if f.detail or c.position == 0:  # the leaf's expiry is what the alert and the panel watch
                not_after.add_metric([*base, pos], c.not_after.timestamp())
    return [chain, not_after, changed]


def _timings(f: _Families, series: Sequence[SeriesView]) -> list[Metric]:
    phase = f.gauge(
        "relaywatch_probe_duration_seconds",
        "Duration of each phase of the last probe",
        ["phase"],
        detail=True,
    )
    last = f.gauge("relaywatch_last_probe_timestamp_seconds", "When the last probe started, Unix time")
    hist = f.histogram("relaywatch_probe_total_duration_seconds", "Total duration of probes", detail=True)
    counter = f.counter("relaywatch_probes", "Probes run, by verdict", ["verdict"], detail=True)
    for s in series:
        r, base = s.result.record, f.base(s)
        last.add_metric(base, r.started_at.timestamp())
        if not f.detail:  # the rest are detail families: nothing to add (the most work of any collector)
            continue
        for p in PHASES:
            if p in r.timings:
                phase.add_metric([*base, p], r.timings[p])
        hist.add_metric(base, _buckets(s.durations.counts), s.durations.total)
        for v in Verdict:
            counter.add_metric([*base, str(v)], float(s.probes_by_verdict.get(str(v), 0)))
    return [phase, last, hist, counter]


def _ct(f: _Families, series: Sequence[SeriesView]) -> list[Metric]:
    operators = f.gauge(
        "relaywatch_leaf_valid_sct_operators",
        "Distinct CT log operators with a valid SCT embedded in the leaf (0: none or no SCTs)",
        detail=True,
    )
    for s in series:
        ct = s.result.analysis.ct
        operators.add_metric(f.base(s), float(ct.valid_operators if ct else 0))
    return [operators]


_STS_MODES = frozenset({"enforce", "testing", "none"})
_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}\Z")


def _gateway(f: _Families, series: Sequence[SeriesView]) -> list[Metric]:
    """DANE and MTA-STS of gateway hosts: only series whose probe looked them up (port 25, mx:), at most one
    state set and one info series each; the policy's mode and id are checked against RFC 8461's grammar,
    anything else exports as `invalid`."""
    dane = f.state_set(
        "relaywatch_dane_status", "DANE (TLSA) state of the gateway address (state set)", "status", DaneStatus
    )
    policy = f.gauge(
        "relaywatch_mta_sts_policy_info", "The MX domain's MTA-STS policy (mode and id)", ["mode", "id"]
    )
    for s in series:
        a, base = s.result.analysis, f.base(s)
        if a.dane is not None:
            dane.add(base, a.dane.status)
        m = a.mta_sts
        if m is not None and m.mode:
            mode = m.mode if m.mode in _STS_MODES else "invalid"
            policy.add_metric([*base, mode, m.id if _STS_ID.match(m.id) else "invalid"], 1.0)
    return [dane.family, policy]


COLLECTORS: tuple[Collector, ...] = (_probe, _tls, _chain, _timings, _ct, _gateway)


def families(series: Sequence[SeriesView], layout: Layout = Layout()) -> Iterator[Metric]:
    f = _Families(layout)
    for collect in COLLECTORS:
        yield from (m for m in collect(f, series) if not isinstance(m, _Discarded))


def path_families(
    series: Sequence[SeriesView],
    paths: Mapping[tuple[str, str], PathResult],
    layout: Layout = Layout(),
) -> Iterator[Metric]:
    yield from (m for m in _path(_Families(layout), series, paths) if not isinstance(m, _Discarded))


def _path(
    f: _Families, series: Sequence[SeriesView], paths: Mapping[tuple[str, str], PathResult]
) -> list[Metric]:
    status = f.state_set(
        "relaywatch_path_status", "Result of the last path trace (state set)", "status", PathStatus, True
    )
    hops = f.gauge("relaywatch_path_hops", "Hops seen by the last path trace", detail=True)
    term = f.gauge(
        "relaywatch_path_terminating_hop", "Hop at which the mail port answered (SYN-ACK or RST)", detail=True
    )
    dest = f.gauge(
        "relaywatch_path_destination_hop", "Hop at which the address answered ICMP echo", detail=True
    )
    middlebox = f.gauge(
        "relaywatch_path_middlebox_detected", "1 when the mail port answers before the destination"
    )
    modified = f.gauge(
        "relaywatch_path_packet_modified", "1 when a hop quoted back a TCP header that differs", detail=True
    )
    for s in series:
        p = paths.get((s.target, s.address))
        if p is None:
            continue
        base = f.base(s)
        status.add(base, p.status)
        if p.status is PathStatus.UNAVAILABLE:
            continue
        for fam, value in ((hops, p.hops), (term, p.terminating_hop), (dest, p.destination_hop)):
            if value is not None:
                fam.add_metric(base, float(value))
        middlebox.add_metric(base, 1.0 if p.status.middlebox else 0.0)
        modified.add_metric(base, 1.0 if p.packet_modified else 0.0)
    return [status.family, hops, term, dest, middlebox, modified]


def target_families(
    worker_failures: Iterable[tuple[str, Mapping[str, str], int]], layout: Layout = Layout()
) -> Iterator[Metric]:
    """Per target (not per address): probes that produced no result because the probe worker died or hung.
    Such a probe leaves the target's series as they were; this counter says it happened."""
    yield from _worker(_Families(layout, per_address=False), worker_failures)


def _worker(f: _Families, worker_failures: Iterable[tuple[str, Mapping[str, str], int]]) -> list[Metric]:
    failures = f.counter(
        "relaywatch_probe_worker_failures",
        "Probes of a target lost to a probe worker that died or hung (its series keep the last result)",
    )
    for target, labels, count in worker_failures:
        failures.add_metric([label(target), *(label(labels.get(n, "")) for n in f.extra)], count)
    return [failures]


def info_families(
    profiles: Iterable[tuple[str, str]],
    worker_restarts: int = 0,
    events_write_failures: int = 0,
    durations: DurationsView | None = None,
) -> Iterator[Metric]:
    build = GaugeMetricFamily(
        "relaywatch_build_info", "Version of relaywatch and Python", labels=["version", "python"]
    )
    build.add_metric([__version__, sys.version.split()[0]], 1.0)
    prof = GaugeMetricFamily(
        "relaywatch_profile_info", "Trust profiles in use", labels=["profile", "version"]
    )
    for name, version in sorted(set(profiles)):
        prof.add_metric([label(name), label(version)], 1.0)
    restarts = CounterMetricFamily(
        "relaywatch_probe_worker_restarts",
        "Probe worker processes replaced after dying (e.g. on hostile input)",
        value=worker_restarts,
    )
    events = CounterMetricFamily(
        "relaywatch_events_write_failures",
        "Evidence log events that could not be written when they happened (kept in memory and retried)",
        value=events_write_failures,
    )
    hist = HistogramMetricFamily(
        "relaywatch_host_probe_duration_seconds", "Total duration of every probe this agent ran", unit=""
    )
    if durations is not None:
        hist.add_metric([], _buckets(durations.counts), durations.total)
    yield from (build, prof, restarts, events, hist)


def _buckets(counts: Sequence[int]) -> list[tuple[str, float]]:
    cumulative, buckets = 0, []
    for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
    return buckets


def host_families(report: HostReport | None) -> Iterator[Metric]:
    procs = GaugeMetricFamily(
        "relaywatch_local_interceptor_process",
        "Running processes of known TLS-intercepting products",
        labels=["product", "process"],
    )
    cas = GaugeMetricFamily(
        "relaywatch_trust_store_interception_ca",
        "CAs in this host's trust stores named like a known interceptor",
        labels=["product", "subject_cn", "spki_sha256"],
    )
    if report is not None:
        seen: set[tuple[str, str]] = set()
        for p in report.interceptor_processes:
            key = (label(p.product or "unknown"), label(p.name))
            if key not in seen:
                seen.add(key)
                procs.add_metric(list(key), 1.0)
        for c in report.store_interception_cas:
            cas.add_metric([label(c.product or "unknown"), label(c.subject_cn), c.spki_sha256], 1.0)
    yield from (procs, cas)


@functools.lru_cache(maxsize=16)
def series_layout(layout: Layout = Layout()) -> tuple[Metric, ...]:
    """The per-series families in exposition order (empty families: for their names and headers); the
    same for every scrape and /probe of a config, so made once per layout (read only)."""
    return (*families([], layout), *path_families([], {}, layout))


@functools.cache
def reserved_label_names() -> frozenset[str]:
    """Every label name a family that carries target labels uses itself, and Prometheus' own: a target
    label of one of these names would be overwritten, or would overwrite, in some series."""
    full = Layout(detail=True)
    per_series, per_target = _Families(full), _Families(full, per_address=False)
    for collect in COLLECTORS:
        collect(per_series, [])
    _path(per_series, [], {})
    _worker(per_target, ())
    return frozenset(per_series.used | per_target.used | PROMETHEUS_LABELS)
