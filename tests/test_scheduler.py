"""The schedule: a verdict change is confirmed promptly; a hostile target does not hold up the others."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from relaywatch.lab.hostile import hostile
from relaywatch.lab.pki import LabPKI
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.pipeline import check_ref
from relaywatch.run import scheduler as sched
from relaywatch.run.config import parse_config
from relaywatch.run.scheduler import Scheduler
from relaywatch.run.state import AgentState

from tests.support import wait_for

pytestmark = pytest.mark.peers


def probes_of(state: AgentState, target: str) -> list[str]:
    return [str(e.result.verdict) for e in state.recent if e.target == target]


def test_verdict_change_gets_a_prompt_confirmation(
    pki: LabPKI, lab_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sched, "CONFIRM_AFTER", 0.5)
    mail = Mail("smtp", server_context(pki.relay, [pki.issuing]))
    with LabServer(mail) as s:
        name = f"smtp://127.0.0.1:{s.port}"
        cfg = parse_config(
            f"interval: 60s\nprofile: {lab_dir}/lab-profile.yml\ntargets: [{name}]\n", "t", lab_dir
        )
        state = AgentState(cfg)
        scheduler = Scheduler(state, check_ref)
        scheduler.start()
        try:
            wait_for(lambda: probes_of(state, name) == ["ok"], 10)
            mail.starttls = "masked"  # a firewall starts stripping
            scheduler.reschedule()  # stands in for the next interval
            wait_for(lambda: len(probes_of(state, name)) >= 3, 10)
            time.sleep(1.0)
            assert probes_of(state, name) == [
                "ok",
                "starttls_stripped",
                "starttls_stripped",
            ]  # confirmed, then quiet
        finally:
            scheduler.stop()


def test_hostile_target_does_not_delay_others(pki: LabPKI, lab_dir: Path) -> None:
    with hostile("drip") as slow, LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as fast:
        slow_name, fast_name = f"smtp://127.0.0.1:{slow.port}", f"smtp://127.0.0.1:{fast.port}"
        cfg = parse_config(
            f"interval: 1s\ntimeout: 8s\nconcurrency: 2\nprofile: {lab_dir}/lab-profile.yml\n"
            f"targets: [{slow_name}, {fast_name}]\n",
            "t",
            lab_dir,
        )
        state = AgentState(cfg)
        scheduler = Scheduler(state, check_ref)
        scheduler.start()
        try:
            wait_for(lambda: len(probes_of(state, fast_name)) >= 4, 15)
            assert probes_of(state, slow_name) == []  # still dripping its greeting, one byte a second
        finally:
            scheduler.stop()
