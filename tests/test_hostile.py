"""Hostile and broken servers: a verdict within the timeout plus a small margin, and never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from relaywatch.lab.hostile import hostile

from tests.support import run_cli

pytestmark = pytest.mark.peers

TIMEOUT = 3.0
MARGIN = 2.0  # process start-up and analysis


@pytest.mark.parametrize(
    ("kind", "verdict", "phase"),
    [
        ("silent", "protocol_error", "greeting"),
        ("garbage", "protocol_error", "greeting"),
        ("long_line", "protocol_error", "greeting"),
        ("many_lines", "protocol_error", "capabilities"),
        ("drip", "protocol_error", "greeting"),
        ("rst_handshake", "protocol_error", "handshake"),
        ("tls_alert", "protocol_error", "handshake"),
        ("long_chain", "intercepted", None),
        ("banner", "protocol_error", "greeting"),
        ("close_after_greeting", "protocol_error", "capabilities"),
    ],
)
def test_hostile_server_gets_a_verdict(kind: str, verdict: str, phase: str | None, lab_dir: Path) -> None:
    with hostile(kind) as server:
        start = time.monotonic()
        proc = run_cli(
            "check",
            "--json",
            "--timeout",
            str(TIMEOUT),
            "--profile",
            str(lab_dir / "lab-profile.yml"),
            f"smtp://127.0.0.1:{server.port}",
            timeout=30,
        )
        elapsed = time.monotonic() - start
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["verdict"] == verdict
    assert elapsed < TIMEOUT + MARGIN
    if phase:
        assert result["failure"]["phase"] == phase
    if kind == "long_chain":  # 60 certificates: kept up to the cap, the rest counted, nothing crashes
        assert len(result["chain"]) == 16 and result["tls"]["chain_truncated"] == 44
    if kind in ("long_line", "many_lines"):
        assert sum(len(t["text"]) for t in result["transcript"]) < 100_000  # bounded evidence
