"""Baseline (trust on first use): a chain change between two real probes is reported once, survives a
restart (a new Baseline over the same state directory), and a corrupt state file is replaced with a
warning."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from relaywatch.analysis.baseline import Baseline, default_state_dir
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.pki import LabPKI
from relaywatch.lab.servers import LabServer, Mail, server_context

from tests.agent_helpers import run_agent
from tests.support import probe, samples, wait_for

pytestmark = pytest.mark.peers


def test_chain_change_reported_once_and_survives_restart(
    pki: LabPKI, lab_profile: TrustProfile, tmp_path: Path
) -> None:
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as s:
        port = s.port
        [first] = probe(f"smtp://127.0.0.1:{port}", lab_profile)
    with LabServer(Mail("smtp", server_context(pki.sibling_relay, [pki.sibling])), port=port):
        [second] = probe(f"smtp://127.0.0.1:{port}", lab_profile)
        [third] = probe(f"smtp://127.0.0.1:{port}", lab_profile)
    baseline = Baseline(tmp_path)
    assert baseline.observe(first) == []
    changes = baseline.observe(second)
    assert [c.code for c in changes] == ["chain_changed"]
    assert changes[0].before["spki_sha256"][0] != changes[0].after["spki_sha256"][0]
    assert changes[0].finding().verdict is None  # evidence, never a verdict
    assert baseline.observe(third) == []  # reported once
    restarted = Baseline(tmp_path)
    assert restarted.observe(third) == [] and restarted.observe(first) == []  # both chains known
    assert restarted.chain_changed_at(f"smtp://127.0.0.1:{port}", "127.0.0.1") is not None


def test_corrupt_state_gives_one_warning_and_a_fresh_baseline(
    relay: LabServer, lab_profile: TrustProfile, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "baseline.json").write_bytes(b'{"format": 1, "paths": {"x": [')
    with caplog.at_level(logging.WARNING, "relaywatch.baseline"):
        baseline = Baseline(tmp_path)
    assert len(caplog.records) == 1 and "corrupt" in caplog.records[0].getMessage()
    [r] = probe(f"smtp://127.0.0.1:{relay.port}", lab_profile)
    assert baseline.observe(r) == []
    assert Baseline(tmp_path).entries  # written again, readable


def test_state_dir_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/x/state")
    assert default_state_dir() == Path("/x/state/relaywatch")
    assert default_state_dir(service=True) == Path("/var/lib/relaywatch")


def test_the_agent_reports_a_chain_change_once_and_remembers_it(
    pki: LabPKI, lab_dir: Path, tmp_path: Path
) -> None:
    """--state.dir end to end: the metric, one evidence-log event, a restart, a corrupt state file."""
    state, events = tmp_path / "state", tmp_path / "events.jsonl"
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as s:
        port = s.port
        cfg = tmp_path / "relaywatch.yml"
        cfg.write_text(
            f"interval: 1s\ntimeout: 3s\nprofile: {lab_dir}/lab-profile.yml\n"
            f"path: {{enabled: false}}\ntargets: [smtp://127.0.0.1:{port}]\n"
        )
        args = ("--state.dir", str(state), "--events.file", str(events))
        with run_agent(cfg, *args) as agent:
            wait_for(lambda: samples(agent.metrics(), "relaywatch_verdict", verdict="ok"), 30)
            assert not samples(agent.metrics(), "relaywatch_chain_changed_timestamp_seconds")
    with LabServer(Mail("smtp", server_context(pki.sibling_relay, [pki.sibling])), port=port):
        with run_agent(cfg, *args) as agent:  # a restart: the baseline comes from the state file
            changed = wait_for(
                lambda: samples(agent.metrics(), "relaywatch_chain_changed_timestamp_seconds"), 30
            )
            wait_for(lambda: len(events.read_text().splitlines()) >= 2, 30)
            time.sleep(3)  # more probes of the same new chain: no more events
        lines = [json.loads(line) for line in events.read_text().splitlines()]
        assert [e["event"] for e in lines if e["event"] == "chain_changed"] == ["chain_changed"]
        assert changed[0].value > 0
        (state / "baseline.json").write_text("{not json")
        with run_agent(cfg, *args) as agent:
            wait_for(lambda: samples(agent.metrics(), "relaywatch_verdict", verdict="ok"), 30)
            agent.proc.terminate()
            agent.proc.wait(10)
            log = agent.proc.stderr.read() if agent.proc.stderr else ""
        assert "corrupt" in log and "Traceback" not in log
        assert (state / "baseline.corrupt").exists()
