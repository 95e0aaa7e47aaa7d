"""Prometheus metric families derived from probe results (client_python custom-collector style).

Label values taken from certificates are attacker-controlled: sanitized and cut to 64 characters, and
every family has a fixed number of series per target and address whatever a server sends."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from relaywatch import __version__
from relaywatch.export.exposition import render
from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult, StartTLSState, Verdict
from relaywatch.path.model import PathResult, PathStatus
from relaywatch.probe.limits import Phase

MAX_LABEL = 64
MAX_POSITIONS = 10
PHASES = tuple(str(p) for p in Phase if p is not Phase.LOCAL_PEER)
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def label(value: object) -> str:
    """Printable ASCII only, at most 64 characters: safe in any exposition format, bounded in size."""
    text = _UNSAFE.sub("?", str(value))
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "~"


@dataclass
class Series:
    """What the agent keeps per target and address between scrapes: the last result and counters."""

    target: str
    address: str
    labels: Mapping[str, str]
    result: ProbeResult
    probes_by_verdict: dict[str, int] = field(default_factory=dict)
    durations: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    duration_sum: float = 0.0
    entry_id: int = 0  # the probe in the agent's history that produced `result`
    rendered: dict[str, bytes] = field(default_factory=dict)  # exposition lines per family, see exposition.py

    def render(self, path: PathResult | None, extra_label_names: Sequence[str] = ()) -> None:
        """Called whenever the result or the path changes; scrapes then only join these lines."""
        key = {(self.target, self.address): path} if path else {}
        self.rendered = render(
            [*families([self], extra_label_names), *path_families([self], key, extra_label_names)]
        )

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


def families(series: Sequence[Series], extra_label_names: Sequence[str] = ()) -> Iterator[Metric]:
    names = ["target", "address", *extra_label_names]

    def g(name: str, doc: str, more: Sequence[str] = (), unit: str = "") -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*names, *more], unit=unit)

    success = g("relaywatch_probe_success", "1 when the probe completed a TLS session, 0 otherwise")
    verdict = g("relaywatch_verdict", "Current verdict of the path to the target (state set)", ["verdict"])
    intercepted = g("relaywatch_interception_detected", "1 when the TLS session is re-signed on the path")
    interceptor = g(
        "relaywatch_interceptor_info",
        "The product that intercepts, while intercepted",
        ["product", "vendor", "kind", "ca_subject_cn", "ca_spki_sha256"],
    )
    starttls = g("relaywatch_starttls_state", "STARTTLS state seen by the last probe (state set)", ["state"])
    version = g("relaywatch_tls_version_info", "TLS version negotiated by the last probe", ["version"])
    cipher = g("relaywatch_tls_cipher_info", "TLS cipher negotiated by the last probe", ["cipher"])
    chain = g(
        "relaywatch_chain_certificate_info",
        "Certificates presented, leaf first (at most 10)",
        ["position", "subject_cn", "issuer_cn", "spki_sha256", "expected"],
    )
    not_after = g(
        "relaywatch_certificate_not_after_timestamp_seconds",
        "Expiry of each presented certificate, Unix time",
        ["position"],
    )
    phase = g("relaywatch_probe_duration_seconds", "Duration of each phase of the last probe", ["phase"])
    last = g("relaywatch_last_probe_timestamp_seconds", "When the last probe started, Unix time")
    hist = HistogramMetricFamily(
        "relaywatch_probe_total_duration_seconds", "Total duration of probes", labels=names, unit=""
    )
    counter = CounterMetricFamily("relaywatch_probes", "Probes run, by verdict", labels=[*names, "verdict"])
    sct_operators = g(
        "relaywatch_leaf_valid_sct_operators",
        "Distinct CT log operators with a valid SCT embedded in the leaf (0: none or no SCTs)",
    )
    for s in series:
        r, a = s.result.record, s.result.analysis
        base = [label(s.target), label(s.address), *(label(s.labels.get(n, "")) for n in extra_label_names)]
        completed = r.tls is not None and (r.failure is None or r.failure.phase == "post_tls")
        success.add_metric(base, 1.0 if completed else 0.0)
        for v in Verdict:
            verdict.add_metric([*base, str(v)], 1.0 if a.verdict is v else 0.0)
        intercepted.add_metric(base, 1.0 if a.verdict is Verdict.INTERCEPTED else 0.0)
        i = a.interceptor
        if i is not None and a.verdict is Verdict.INTERCEPTED:
            cn = i.ca_subject_cn
            interceptor.add_metric(
                [*base, label(i.product), label(i.vendor), label(i.kind), label(cn), label(i.ca_spki_sha256)],
                1.0,
            )
        for st in StartTLSState:
            starttls.add_metric([*base, str(st)], 1.0 if r.starttls.state is st else 0.0)
        if r.tls is not None:
            version.add_metric([*base, label(r.tls.version)], 1.0)
            cipher.add_metric([*base, label(r.tls.cipher)], 1.0)
        for c in a.chain[:MAX_POSITIONS]:
            pos = str(c.position)
            chain.add_metric(
                [
                    *base,
                    pos,
                    label(c.subject_cn),
                    label(c.issuer_cn),
                    c.spki_sha256,
                    "true" if c.expected else "false",
                ],
                1.0,
            )
            not_after.add_metric([*base, pos], c.not_after.timestamp())
        for p in PHASES:
            if p in r.timings:
                phase.add_metric([*base, p], r.timings[p])
        last.add_metric(base, r.started_at.timestamp())
        cumulative, buckets = 0, []
        for bound, n in zip((*BUCKETS, float("inf")), s.durations, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        hist.add_metric(base, buckets, s.duration_sum)
        for v in Verdict:
            counter.add_metric([*base, str(v)], float(s.probes_by_verdict.get(str(v), 0)))
        sct_operators.add_metric(base, float(a.ct.valid_operators if a.ct else 0))
    yield from (
        success,
        verdict,
        intercepted,
        interceptor,
        starttls,
        version,
        cipher,
        chain,
        not_after,
        phase,
        last,
        hist,
        counter,
        sct_operators,
    )


def info_families(profiles: Iterable[tuple[str, str]], worker_restarts: int = 0) -> Iterator[Metric]:
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
    yield from (build, prof, restarts)


def path_families(
    series: Sequence[Series],
    paths: Mapping[tuple[str, str], PathResult],
    extra_label_names: Sequence[str] = (),
) -> Iterator[Metric]:
    names = ["target", "address", *extra_label_names]

    def g(name: str, doc: str, more: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=[*names, *more])

    status = g("relaywatch_path_status", "Result of the last path trace (state set)", ["status"])
    hops = g("relaywatch_path_hops", "Hops seen by the last path trace")
    term = g("relaywatch_path_terminating_hop", "Hop at which the mail port answered (SYN-ACK or RST)")
    dest = g("relaywatch_path_destination_hop", "Hop at which the address answered ICMP echo")
    middlebox = g("relaywatch_path_middlebox_detected", "1 when the mail port answers before the destination")
    modified = g("relaywatch_path_packet_modified", "1 when a hop quoted back a TCP header that differs")
    for s in series:
        p = paths.get((s.target, s.address))
        if p is None:
            continue
        base = [label(s.target), label(s.address), *(label(s.labels.get(n, "")) for n in extra_label_names)]
        for st in PathStatus:
            status.add_metric([*base, str(st)], 1.0 if p.status is st else 0.0)
        if p.status is PathStatus.UNAVAILABLE:
            continue
        for fam, value in ((hops, p.hops), (term, p.terminating_hop), (dest, p.destination_hop)):
            if value is not None:
                fam.add_metric(base, float(value))
        middlebox.add_metric(base, 1.0 if p.status.middlebox else 0.0)
        modified.add_metric(base, 1.0 if p.packet_modified else 0.0)
    yield from (status, hops, term, dest, middlebox, modified)


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


def series_layout(extra_label_names: Sequence[str] = ()) -> list[Metric]:
    """The per-series families in exposition order (empty families: for their names and headers)."""
    return [*families([], extra_label_names), *path_families([], {}, extra_label_names)]
