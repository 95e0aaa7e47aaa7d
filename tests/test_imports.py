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


def test_the_probe_worker_loads_dnspython_only_for_gateway_targets() -> None:
    """dnspython is about 3 MB of the worker: a relay on 587 or 993 (the default config) never needs it."""
    probe = (
        "from relaywatch.probe.session import probe_target\n"
        "from relaywatch.probe.options import ProbeOptions\n"
        "from relaywatch.probe.limits import Limits\n"
        "from relaywatch.target import parse_target\n"
        "import relaywatch.run.worker\n"
        "[r] = probe_target(parse_target('smtp://127.0.0.1:1'), ProbeOptions(Limits(timeout=2)))\n"
        "assert r.failure is not None, r\n"
    )
    mods = _modules_after(probe)
    assert "relaywatch.probe.session" in mods
    assert not {m for m in mods if m == "dns" or m.startswith("dns.")}
    assert "relaywatch.probe.gateway" not in mods
