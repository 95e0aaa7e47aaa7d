"""What each process imports is a footprint feature: checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(out.split())


def test_the_path_tracer_loads_only_the_scapy_layers_it_uses() -> None:
    mods = _modules_after("import relaywatch.path.trace")
    assert "scapy.layers.inet" in mods and "scapy.all" not in mods


@pytest.mark.parametrize("module", ["relaywatch.run.agent", "relaywatch.target", "relaywatch.run.client"])
def test_the_agent_process_parses_targets_without_the_tls_stack(module: str) -> None:
    mods = _modules_after(f"import {module}")
    assert not {"cryptography", "OpenSSL", "scapy", "relaywatch.probe.smtp"} & mods
