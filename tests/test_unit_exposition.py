"""The /metrics exposition: what Prometheus parses, a fixed number of series whatever a server sends, and
label values that are printable ASCII of at most 64 characters."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import core
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from relaywatch.analysis.baseline import Baseline
from relaywatch.analysis.profile import TrustProfile
from relaywatch.export.exposition import expose
from relaywatch.export.families import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    float_to_go_string,
)
from relaywatch.export.families import Metric as OurMetric
from relaywatch.export.metrics import (
    BUCKETS,
    MAX_LABEL,
    MAX_POSITIONS,
    Layout,
    families,
    info_families,
    label,
    series_layout,
)
from relaywatch.lab.pki import Issued, LabPKI, forge, make_ca, make_leaf
from relaywatch.model import ProbeResult, StartTLS, StartTLSState, Verdict
from relaywatch.path.judge import judge, unavailable
from relaywatch.path.model import Hop, PathTrace, SentSyn
from relaywatch.run.config import Config, parse_config
from relaywatch.run.series import Series
from relaywatch.run.state import AgentState

from tests.support import cn_name, data_lines, judged, record, samples, value
from tests.support import families as parse_families

# --------------------------------------------------------------------------- label values

SITE = Layout(("site",), detail=True)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("smtp.office365.com", "smtp.office365.com"),
        ('Contoso "Inspection" CA \\ 2', 'Contoso "Inspection" CA \\ 2'),  # printable: kept, escaped later
        ("Zürich CA", "Z?rich CA"),
        ("a\nb\rc\td", "a?b?c?d"),
        ("\x1b[31mred\x1b[0m", "?[31mred?[0m"),
        ("evil\u202etxt.exe", "evil?txt.exe"),  # right-to-left override
        ("A" * MAX_LABEL, "A" * MAX_LABEL),
        ("A" * (MAX_LABEL + 1), "A" * (MAX_LABEL - 1) + "~"),  # cut, and marked as cut
        (42, "42"),
    ],
)
def test_label_values_are_printable_ascii_and_bounded(raw: object, shown: str) -> None:
    assert label(raw) == shown


def test_any_label_value_is_safe() -> None:
    hostile = "".join(chr(c) for c in range(0, 0x3000, 7)) * 3
    v = label(hostile)
    assert len(v) == MAX_LABEL and v.isascii() and v.isprintable()


# --------------------------------------------------------------------------- an agent state, in-process


def config(lab_dir: Path, *targets: str, labels: str = "", detail: bool = True) -> Config:
    lines = [f"profile: {lab_dir}/lab-profile.yml", f"metrics: {{detail: {str(detail).lower()}}}", "targets:"]
    for t in targets:
        lines.append(f"  - target: {t}")
        if labels:
            lines.append(f"    labels: {labels}")
    return parse_config("\n".join(lines) + "\n", "test.yml", lab_dir)


def at_address(result: ProbeResult, address: str) -> ProbeResult:
    return dataclasses.replace(result, record=dataclasses.replace(result.record, address=address))


HOSTILE_CN = 'X"\\' * 19 + "\u202e\n0"  # quotes, backslashes, a bidi override, a newline: 62 bytes
HOSTILE_LABEL = 'X"\\' * 19 + "??0"


def hostile_chain(depth: int = 60) -> list[Issued]:
    """A chain of `depth` certificates, the ones nearest the leaf (and the leaf) with names built to hurt."""
    cas = [make_ca(cn_name("Y" * 60 + "0"))]
    for i in range(1, depth - 2):
        cas.append(make_ca(cn_name("Y" * 60 + str(i)), cas[-1]))
    cas.append(make_ca(cn_name(HOSTILE_CN), cas[-1]))
    leaf = make_leaf(cas[-1], ("smtp.relaywatch.test",), subject=cn_name(HOSTILE_CN))
    return [leaf, *reversed(cas)]


@pytest.fixture
def results(pki: LabPKI, lab_profile: TrustProfile) -> dict[str, ProbeResult]:
    stripped = StartTLS(StartTLSState.MASKED, ("XXXXXXXA",), (), "500 5.5.1 command not recognized")
    return {
        "ok": judged(record(pki.relay, pki.issuing), lab_profile),
        "intercepted": judged(
            record(forge(pki.relay.cert, pki.interception_ca), pki.interception_ca), lab_profile
        ),
        "stripped": judged(record(tls=False, starttls=stripped), lab_profile),
        "hostile": judged(record(*hostile_chain()), lab_profile),
    }


def test_the_results_are_what_the_series_claim(results: dict[str, ProbeResult]) -> None:
    assert {k: r.verdict for k, r in results.items()} == {
        "ok": Verdict.OK,
        "intercepted": Verdict.INTERCEPTED,
        "stripped": Verdict.STARTTLS_STRIPPED,
        "hostile": Verdict.INTERCEPTED,
    }


def exposition_of(cfg: Config, per_target: dict[str, list[ProbeResult]]) -> str:
    state = AgentState(cfg)
    for tc in cfg.targets:
        state.record(tc, per_target[tc.name])
    return state.exposition().decode()


def test_each_target_has_one_verdict_and_one_starttls_state(
    lab_dir: Path, results: dict[str, ProbeResult]
) -> None:
    names = {k: f"smtp://{k}.test:25" for k in results}
    text = exposition_of(config(lab_dir, *names.values()), {names[k]: [r] for k, r in results.items()})
    for kind, target in names.items():
        verdicts = samples(text, "relaywatch_verdict", target=target)
        assert len(verdicts) == len(Verdict)
        assert [s.labels["verdict"] for s in verdicts if s.value == 1] == [str(results[kind].verdict)]
        states = samples(text, "relaywatch_starttls_state", target=target)
        assert len(states) == len(StartTLSState) and sum(s.value for s in states) == 1
        detected = value(text, "relaywatch_interception_detected", target=target)
        assert detected == (1.0 if kind in ("intercepted", "hostile") else 0.0)
    [avast] = samples(text, "relaywatch_interceptor_info", target=names["intercepted"])
    assert (avast.labels["product"], avast.labels["kind"]) == ("Avast", "antivirus")
    assert not samples(
        text, "relaywatch_interceptor_info", target=names["stripped"]
    )  # only while intercepted
    assert value(text, "relaywatch_probe_success", target=names["stripped"]) == 0
    assert value(text, "relaywatch_probe_success", target=names["ok"]) == 1


def test_series_per_target_are_fixed_whatever_the_chain(
    lab_dir: Path, results: dict[str, ProbeResult]
) -> None:
    """60 certificates with hostile names yield as many series as 2 (plus the interceptor's info)."""
    cfg = config(lab_dir, "smtp://relay.test:25")
    small = exposition_of(cfg, {"smtp://relay.test:25": [results["ok"]]})
    big = exposition_of(cfg, {"smtp://relay.test:25": [results["hostile"]]})
    assert len(results["hostile"].analysis.chain) == 60
    chain = samples(big, "relaywatch_chain_certificate_info")
    assert (
        len(chain) == MAX_POSITIONS == len(samples(big, "relaywatch_certificate_not_after_timestamp_seconds"))
    )
    assert len(data_lines(big)) == len(data_lines(small)) + 2 * (MAX_POSITIONS - 2) + 1
    for s in chain:
        assert all(len(v) <= MAX_LABEL and v.isascii() and v.isprintable() for v in s.labels.values())
    leaf = next(s for s in chain if s.labels["position"] == "0")
    assert (leaf.labels["subject_cn"], leaf.labels["issuer_cn"]) == (HOSTILE_LABEL, HOSTILE_LABEL)
    for line in big.splitlines():  # nothing a server sends starts a line of its own
        assert line.startswith(("# HELP relaywatch_", "# TYPE relaywatch_", "relaywatch_")), line


def test_configured_label_values_survive_escaping(lab_dir: Path, results: dict[str, ProbeResult]) -> None:
    cfg = config(lab_dir, "smtp://relay.test:25", labels="{site: 'hq \"west\" \\ 2'}")
    text = exposition_of(cfg, {"smtp://relay.test:25": [results["ok"]]})
    [s] = samples(text, "relaywatch_probe_success")
    assert s.labels["site"] == 'hq "west" \\ 2' and s.labels["target"] == "smtp://relay.test:25"


def test_an_address_that_vanishes_takes_its_series_along(
    lab_dir: Path, results: dict[str, ProbeResult]
) -> None:
    cfg = config(lab_dir, "smtp://relay.test:25")
    [tc] = cfg.targets
    state = AgentState(cfg)
    v4, v6 = at_address(results["ok"], "127.0.0.1"), at_address(results["intercepted"], "::1")
    first = state.record(tc, [v4, v6])
    assert {c.address for c in first} == {"127.0.0.1", "::1"}  # new addresses are changes
    text = state.exposition().decode()
    assert value(text, "relaywatch_interception_detected", address="::1") == 1
    later = dataclasses.replace(v4, record=dataclasses.replace(v4.record, started_at=dt.datetime.now(dt.UTC)))
    assert state.record(tc, [later]) == []  # the same verdict on the remaining address: no event
    text = state.exposition().decode()
    assert not samples(text, "relaywatch_verdict", address="::1")
    assert value(text, "relaywatch_verdict", address="127.0.0.1", verdict="ok") == 1


def test_probe_counters_and_duration_histogram(lab_dir: Path, results: dict[str, ProbeResult]) -> None:
    cfg = config(lab_dir, "smtp://relay.test:25")
    [tc] = cfg.targets
    state = AgentState(cfg)
    for seconds, r in ((0.07, results["ok"]), (3.0, results["intercepted"]), (100.0, results["ok"])):
        state.record(
            tc, [dataclasses.replace(r, record=dataclasses.replace(r.record, timings={"total": seconds}))]
        )
    text = state.exposition().decode()
    assert value(text, "relaywatch_probes_total", verdict="ok") == 2
    assert value(text, "relaywatch_probes_total", verdict="intercepted") == 1
    assert value(text, "relaywatch_probes_total", verdict="unreachable") == 0
    name = "relaywatch_probe_total_duration_seconds"
    assert value(text, name + "_bucket", le="0.1") == 1 and value(text, name + "_bucket", le="5.0") == 2
    assert value(text, name + "_bucket", le="+Inf") == value(text, name + "_count") == 3
    assert value(text, name + "_sum") == pytest.approx(103.07)
    assert len(samples(text, name + "_bucket")) == len(BUCKETS) + 1


def test_path_series_follow_the_judgement(lab_dir: Path, results: dict[str, ProbeResult]) -> None:
    cfg = config(lab_dir, "smtp://relay.test:25")
    [tc] = cfg.targets
    state = AgentState(cfg)
    state.record(tc, [results["intercepted"]])
    early = judge(_early_trace())
    state.set_path(tc.name, "127.0.0.1", early)
    text = state.exposition().decode()
    statuses = {s.labels["status"]: s.value for s in samples(text, "relaywatch_path_status")}
    assert statuses == {
        "terminated_at_destination": 0,
        "terminated_early": 1,
        "inconclusive": 0,
        "unavailable": 0,
    }
    assert value(text, "relaywatch_path_middlebox_detected") == 1
    assert (
        value(text, "relaywatch_path_terminating_hop"),
        value(text, "relaywatch_path_destination_hop"),
    ) == (1, 2)
    state.set_path(tc.name, "127.0.0.1", unavailable("no CAP_NET_RAW"))
    text = state.exposition().decode()
    assert value(text, "relaywatch_path_status", status="unavailable") == 1
    assert not samples(text, "relaywatch_path_terminating_hop")  # no numbers without a trace
    state.set_path(tc.name, "::1", early)  # an address the agent does not have: ignored
    assert not samples(state.exposition().decode(), "relaywatch_path_status", address="::1")


def test_the_default_metric_set_holds_at_most_25_series_per_address(
    lab_dir: Path, pki: LabPKI, lab_profile: TrustProfile, results: dict[str, ProbeResult], tmp_path: Path
) -> None:
    """A 3-certificate chain re-signed by a named interceptor, after a chain change, with a path trace: the
    fullest default."""
    sub_ca = make_ca(cn_name("Avast Web/Mail Shield Intermediate"), pki.interception_ca)
    three = judged(record(forge(pki.relay.cert, sub_ca), sub_ca, pki.interception_ca), lab_profile)
    assert len(three.analysis.chain) == 3 and three.analysis.interceptor is not None
    counts = {}
    for detail in (False, True):
        cfg = config(lab_dir, "smtp://relay.test:25", detail=detail)
        [tc] = cfg.targets
        state = AgentState(cfg)
        state.baseline = Baseline(tmp_path / str(detail))
        for r in (results["ok"], three):  # the chain changed: relaywatch_chain_changed_timestamp_seconds
            state.record(tc, state.with_baseline([at_address(r, "127.0.0.1")]))
        state.set_path(tc.name, "127.0.0.1", judge(_early_trace()))
        text = state.exposition().decode()
        assert value(text, "relaywatch_chain_changed_timestamp_seconds") > 0
        counts[detail] = len([line for line in data_lines(text) if 'address="127.0.0.1"' in line])
    assert counts[False] <= 25 < counts[True]


def test_gateway_families_cost_4_series_for_dane_and_1_for_a_policy(
    lab_dir: Path, results: dict[str, ProbeResult]
) -> None:
    """The README's figure: relaywatch_dane_status (a state set of 4) only on addresses checked for DANE,
    relaywatch_mta_sts_policy_info (1) only with a policy; nothing on other targets."""
    from relaywatch.model import DaneResult, DaneStatus, MtaStsResult

    cfg = config(lab_dir, "smtp://relay.test:25", detail=False)
    [tc] = cfg.targets
    plain = at_address(results["ok"], "127.0.0.1")
    dane = dataclasses.replace(plain.analysis, dane=DaneResult(DaneStatus.VERIFIED))
    sts = dataclasses.replace(
        dane,
        mta_sts=MtaStsResult("relay.test", "enforce", "abc", ("relay.test",), 86400, True),
    )
    counts = []
    for analysis in (plain.analysis, dane, sts):
        state = AgentState(cfg)
        state.record(tc, [dataclasses.replace(plain, analysis=analysis)])
        text = state.exposition().decode()
        counts.append(len([line for line in data_lines(text) if 'address="127.0.0.1"' in line]))
        if analysis is sts:
            assert value(text, "relaywatch_mta_sts_policy_info", mode="enforce", id="abc") == 1
    assert [counts[1] - counts[0], counts[2] - counts[1]] == [4, 1]


def _early_trace() -> PathTrace:
    return PathTrace(
        "127.0.0.1",
        25,
        (Hop(1, "127.0.0.1", 1.0, "syn_ack"),),
        (Hop(1, "198.51.100.1", 1.0, "time_exceeded"), Hop(2, "127.0.0.1", 1.0, "echo_reply")),
        64,
        64,
        SentSyn(1460, 64240, 7),
    )


# --------------------------------------------------------------------------- the format itself


class _Families(Collector):
    """Families handed to client_python's registry: its own, or the agent's (relaywatch.export.families),
    which it reads by their attributes as it reads its own."""

    def __init__(self, metrics: list[OurMetric] | list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(cast(list[Metric], self.metrics))


def test_cached_rendering_matches_prometheus_clients_own(results: dict[str, ProbeResult]) -> None:
    """The agent renders series itself (for speed); what a scraper reads must equal client_python's."""
    series = []
    for i, r in enumerate(results.values()):
        s = Series(f"smtp://t{i}.test:25", "127.0.0.1", {"site": f's"{i}\\'}, r)
        s.observe(r)
        s.render(None, SITE)
        series.append(s)
    ours = expose(info_families([("lab", "lab")]), series_layout(SITE), [s.rendered for s in series], [])
    registry = CollectorRegistry()
    registry.register(_Families([*info_families([("lab", "lab")]), *families(series, SITE)]))
    theirs = generate_latest(registry).decode()

    def comparable(
        text: str,
    ) -> dict[str, tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]]:
        """Families with samples (the agent also announces empty ones, for their names)."""
        out = {}
        for name, f in parse_families(text).items():
            rows = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples)
            if rows:
                out[name] = (f.type, f.documentation, rows)
        return out

    parsed = comparable(ours.decode())
    assert parsed == comparable(theirs)
    assert len(parsed) >= 15  # every kind of family is in the comparison: gauges, counter, histogram


def test_every_family_is_announced_once_before_its_samples(
    lab_dir: Path, results: dict[str, ProbeResult]
) -> None:
    """What promtool checks: one HELP and one TYPE per family, its samples right after, never interleaved."""
    names = [f"smtp://{k}.test:25" for k in results]
    text = exposition_of(
        config(lab_dir, *names), dict(zip(names, ([r] for r in results.values()), strict=True))
    )
    seen: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split()[2]
            assert current not in seen, f"{current} announced twice"
            seen.append(current)
        elif line.startswith("# TYPE "):
            assert line.split()[2] == current
        else:
            sample = line.split("{", 1)[0].split(" ", 1)[0]
            base = current.removesuffix("_total")
            assert sample == current or sample.startswith(base + "_"), (current, line)
    assert len(seen) == len(parse_families(text))


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e7, 1e-7]))
def test_floats_are_written_as_client_python_writes_them(value: float) -> None:
    """The fast paths for 0 and 1 included: -0.0 keeps its sign, as Go and client_python write it."""
    theirs: Callable[[float], str] = floatToGoString  # untyped in prometheus_client
    assert float_to_go_string(value) == theirs(value)


_LABEL_NAME = st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True).filter(lambda n: n not in ("le", "quantile"))
_LABEL_VALUE = st.text(st.sampled_from('ab\\"\n é{}=,'), max_size=8)


@st.composite
def _families(draw: st.DrawFn) -> tuple[OurMetric, Metric]:
    """Any family the agent can build, built twice from the same draws: with export/families.py and with
    client_python's own classes (the API is the same). Gauge, counter or histogram; any label names in any
    order, label values with every character the format escapes, and as many values as names or fewer or
    more."""
    names = draw(st.lists(_LABEL_NAME, max_size=3, unique=True))
    kind = draw(st.sampled_from(["gauge", "counter", "histogram"]))
    values = st.lists(_LABEL_VALUE, min_size=max(0, len(names) - 1), max_size=len(names) + 1)
    finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
    if kind == "histogram":
        hist = HistogramMetricFamily("relaywatch_fuzz_seconds", 'doc "\\ x', labels=names)
        their_hist = core.HistogramMetricFamily("relaywatch_fuzz_seconds", 'doc "\\ x', labels=names)
        for labels in draw(st.lists(values, max_size=3)):
            counts = sorted(draw(st.lists(st.integers(0, 9), min_size=2, max_size=2)))
            buckets, total = [("0.5", float(counts[0])), ("+Inf", float(counts[1]))], draw(finite)
            hist.add_metric(labels, buckets, total)
            their_hist.add_metric(labels, buckets, total)
        return hist, their_hist
    ours: GaugeMetricFamily | CounterMetricFamily
    theirs: core.GaugeMetricFamily | core.CounterMetricFamily
    if kind == "gauge":
        ours = GaugeMetricFamily("relaywatch_fuzz", "doc\nline", labels=names)
        theirs = core.GaugeMetricFamily("relaywatch_fuzz", "doc\nline", labels=names)
    else:
        ours = CounterMetricFamily("relaywatch_fuzz", "doc\nline", labels=names)
        theirs = core.CounterMetricFamily("relaywatch_fuzz", "doc\nline", labels=names)
    for labels in draw(st.lists(values, max_size=4)):
        v = draw(finite | st.sampled_from([0.0, -0.0, 1.0]))
        ours.add_metric(labels, v)
        theirs.add_metric(labels, v)
    return ours, theirs


@given(_families())
def test_any_family_is_written_as_client_python_writes_it(pair: tuple[OurMetric, Metric]) -> None:
    """The agent's rows and renderer (export/families.py, exposition.py) against client_python's own
    family classes and exposition, fed the same calls: the same text, byte for byte (label order,
    escaping, histogram `le`, `_count` and `_sum`, counters' `_total`, values)."""
    ours, theirs = pair
    registry = CollectorRegistry()
    registry.register(_Families([theirs]))
    assert expose([ours], [], [], []) == generate_latest(registry)
