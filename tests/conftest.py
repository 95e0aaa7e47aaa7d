"""Shared lab fixtures: one lab PKI per session, written with a lab trust profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab.pki import LabPKI, make_lab_pki
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.model import ProbeResult
from relaywatch.pipeline import check
from relaywatch.probe.limits import Limits
from relaywatch.probe.options import ProbeOptions
from relaywatch.target import parse_target

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pki() -> LabPKI:
    return make_lab_pki()


@pytest.fixture(scope="session")
def lab_dir(pki: LabPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("labpki")
    pki.write(d)
    return d


@pytest.fixture(scope="session")
def lab_profile(lab_dir: Path) -> TrustProfile:
    return load_profile(str(lab_dir / "lab-profile.yml"))


@pytest.fixture
def relay(pki: LabPKI) -> Iterator[LabServer]:
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as s:
        yield s


def probe(target: str, profile: TrustProfile, timeout: float = 5.0) -> list[ProbeResult]:
    opts = ProbeOptions(limits=Limits(timeout=timeout, phase_timeout=timeout))
    return check(parse_target(target), profile, opts)


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaywatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def cli_json(*args: str, **kw: object) -> tuple[int, list[dict]]:  # type: ignore[type-arg]
    proc = run_cli(*args, "--json", **kw)  # type: ignore[arg-type]
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)
