"""The run layer in-process, without peers: worker failures keep the series, reloads drop the state of
dropped targets, basic auth costs the same for unknown users and has a failure budget, and the web
server's request parsing."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from relaywatch.model import ProbeResult, Verdict
from relaywatch.run import webconfig
from relaywatch.run.config import Config, TargetConfig, parse_config
from relaywatch.run.evidence import PathRunner
from relaywatch.run.httpd import _parse_head
from relaywatch.run.scheduler import failed_result
from relaywatch.run.state import AgentState
from relaywatch.run.webconfig import Auth, WebConfig


def _config(tmp_path: Path, *names: str) -> Config:
    return parse_config("targets: [" + ", ".join(names) + "]\n", "c.yml", tmp_path)


def _result(tc: TargetConfig, address: str, verdict: Verdict) -> ProbeResult:
    r = failed_result(tc, "stand-in")
    return ProbeResult(
        dataclasses.replace(r.record, address=address), dataclasses.replace(r.analysis, verdict=verdict)
    )


def _values(state: AgentState, name: str) -> dict[str, float]:
    return {
        s.labels.get("address", s.labels.get("target", "")): s.value
        for f in text_string_to_metric_families(state.exposition().decode())
        for s in f.samples
        if s.name == name
    }


def test_a_worker_failure_keeps_the_series_and_counts(tmp_path: Path) -> None:
    state = AgentState(_config(tmp_path, "mx.example:25"))
    tc = state.config.targets[0]
    for _ in range(3):
        state.record(tc, [_result(tc, "192.0.2.1", Verdict.INTERCEPTED)])
    probes = _values(state, "relaywatch_probes_total")
    assert state.worker_failed(tc, failed_result(tc, "the probe worker died")) == []
    assert _values(state, "relaywatch_interception_detected") == {"192.0.2.1": 1.0}
    assert _values(state, "relaywatch_probes_total") == probes  # not restarted, not bumped
    assert _values(state, "relaywatch_probe_worker_failures_total") == {"mx.example:25": 1.0}
    last = state.recent[-1].result.analysis
    assert [f.code for f in last.findings] == ["probe_worker_failed"] and state.failures[-1] == state.recent[
        -1
    ]


def test_a_target_whose_first_probe_is_lost_shows_it(tmp_path: Path) -> None:
    state = AgentState(_config(tmp_path, "mx.example:25"))
    tc = state.config.targets[0]
    [change] = state.worker_failed(tc, failed_result(tc, "no answer"))
    assert change.previous is None and change.result.verdict is Verdict.PROTOCOL_ERROR
    state.record(tc, [_result(tc, "192.0.2.1", Verdict.OK)])
    assert set(_values(state, "relaywatch_interception_detected")) == {"192.0.2.1"}


def test_reloads_that_drop_targets_drop_their_state(tmp_path: Path) -> None:
    state = AgentState(_config(tmp_path, "t0.example:25"))
    paths = PathRunner(state)
    try:
        for i in range(500):
            state.set_config(_config(tmp_path, f"t{i}.example:25"))
            tc = state.config.targets[0]
            state.record(tc, [_result(tc, "192.0.2.1", Verdict.OK)])
            state.worker_failed(tc, failed_result(tc, "x"))
            paths(dataclasses.replace(tc), [], [])  # no results: nothing traced
            with paths._lock:
                paths._rounds[(tc.name, "192.0.2.1")] = 1
        assert state.sizes() == {"series": 1, "since": 1, "paths": 0, "worker_failures": 1}
        assert len(paths._rounds) <= 2
        assert len(state.exposition().decode().split('target="')) < 80  # one target's series only
    finally:
        paths.stop()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("cost", [4, 5])
def test_unknown_users_cost_what_configured_ones_cost(cost: int, monkeypatch: pytest.MonkeyPatch) -> None:
    config = WebConfig(users={"prometheus": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=cost))})
    seen: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        seen.append(hashed)
        return bool(real(password, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    assert config.check(_basic("nobody", "pw"), "c") is Auth.DENIED
    assert config.check(_basic("prometheus", "wrong"), "c") is Auth.DENIED
    assert [h.split(b"$")[2] for h in seen] == [f"{cost:02d}".encode()] * 2


def test_failure_budget_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    config = WebConfig(users={"prometheus": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))})
    assert config.check(_basic("prometheus", "pw"), "good") is Auth.OK
    results = [config.check(_basic("prometheus", f"guess{i}"), "bad") for i in range(12)]
    assert results == [Auth.DENIED] * webconfig.FAILURES_BURST + [Auth.LIMITED] * 2
    assert config.check(_basic("prometheus", "pw"), "bad") is Auth.OK  # verified before: no bcrypt needed
    assert config.check(_basic("prometheus", "nope"), "other") is Auth.DENIED  # another client's budget
    assert config.known(_basic("prometheus", "pw")) and not config.known(_basic("prometheus", "nope"))


@pytest.mark.parametrize(
    "head",
    [b"GET /metrics", b"GET metrics HTTP/1.1", b"GET /metrics HTTP/2\r\nA: b", b"GET / HTTP/1.1\r\nNoColon"],
)
def test_malformed_request_heads_are_refused(head: bytes) -> None:
    with pytest.raises(ValueError):
        _parse_head(head)


def test_request_head_is_parsed() -> None:
    method, target, version, headers = _parse_head(b"GET /probe?target=x HTTP/1.1\r\nHost: a\r\nX-A:  b ")
    assert (method, target, version, headers) == (
        "GET",
        "/probe?target=x",
        "HTTP/1.1",
        {"host": "a", "x-a": "b"},
    )


def test_status_page_shows_dane_and_mta_sts_per_address_escaped(tmp_path: Path) -> None:
    """The main table's DANE / MTA-STS cell, per address; the values come from DNS and HTTPS: escaped."""
    from relaywatch.model import DaneResult, DaneStatus, MtaStsResult
    from relaywatch.run.pages import status_page

    state = AgentState(_config(tmp_path, "mx:contoso.test", "smtp.office365.com:587"))
    gw, plain = state.config.targets
    ok = _result(gw, "192.0.2.1", Verdict.OK)
    hostile = "<script>alert(1)</script>"
    verified = dataclasses.replace(
        ok.analysis,
        dane=DaneResult(DaneStatus.VERIFIED),
        mta_sts=MtaStsResult("contoso.test", "enforce", "abc", ("mx1.contoso.test",), 86400, True),
    )
    bogus = dataclasses.replace(
        ok.analysis,
        dane=DaneResult(DaneStatus.BOGUS, (), hostile),
        mta_sts=MtaStsResult("contoso.test", hostile, "id", (), None, False),
    )
    other = _result(gw, "192.0.2.2", Verdict.OK)
    state.record(
        gw,
        [
            dataclasses.replace(ok, analysis=verified),
            dataclasses.replace(other, analysis=bogus),
        ],
    )
    state.record(plain, [_result(plain, "192.0.2.9", Verdict.OK)])
    page = status_page(state)
    assert "<th>DANE / MTA-STS</th>" in page
    rows = {row.split("</td>")[1].removeprefix("<td>"): row for row in page.split("<tr>")[2:]}
    assert "<td>DANE verified; MTA-STS enforce</td>" in rows["192.0.2.1"]
    assert "<td>DANE bogus; MTA-STS &lt;script&gt;alert(1), mx not listed</td>" in rows["192.0.2.2"]
    assert "<td>-</td>" in rows["192.0.2.9"]
    assert "<script>" not in page


@given(st.text())
def test_page_escaping_is_html_escape(text: str) -> None:
    """The status pages escape as html.escape(quote=True) does, without importing the html package."""
    import html

    from relaywatch.run.pages import _e

    assert _e(text) == html.escape(text, quote=True)


def test_the_trimmer_gives_memory_back_at_most_once_per_interval() -> None:
    """malloc_trim walks the whole heap: called after every probe reply, it must run once per `every`."""
    from relaywatch.run.malloc import Trimmer

    calls: list[int] = []
    trimmer = Trimmer(every=3600.0)
    if trimmer._trim is None:
        pytest.skip("no glibc malloc_trim here")

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer._trim = trim
    for _ in range(100):
        trimmer.maybe()
    assert calls == []  # not due yet
    trimmer._next = 0.0  # an interval has passed
    for _ in range(100):
        trimmer.maybe()
    assert calls == [0]  # once, then not again for another hour
