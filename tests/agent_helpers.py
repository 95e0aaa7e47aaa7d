"""Start `relaywatch run` and the Prometheus tools it is tested with, as real processes on loopback."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from relaywatch.lab.demo import Lab

from tests.support import ROOT, agent_argv, free_port, get, stop, wait_for, which

RECORDING_RULES = ROOT / "packaging" / "prometheus" / "relaywatch-recording.yml"  # the dashboard's fleet view


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    url: str
    config: Path

    def metrics(self) -> str:
        return get(self.url + "/metrics")[1]


@contextlib.contextmanager
def run_agent(
    config: Path, *args: str, ready: bool = True, env: Mapping[str, str] | None = None
) -> Iterator[Agent]:
    port = free_port()
    proc = subprocess.Popen(
        agent_argv(config, f"127.0.0.1:{port}", "--log.level", "debug", *args),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    agent = Agent(proc, f"http://127.0.0.1:{port}", config)
    try:
        if ready:
            wait_for(lambda: proc.poll() is not None or get(agent.url + "/-/healthy")[0] == 200, 20)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield agent
    finally:
        stop(proc, "relaywatch run")


@contextlib.contextmanager
def prometheus(tmp: Path, agent: Agent) -> Iterator[str]:
    """A real Prometheus server scraping `agent` every second, with the fleet recording rules; yields its
    API base URL."""
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RECORDING_RULES}']\nscrape_configs:\n  - job_name: relaywatch\n"
        f"    static_configs: [{{targets: ['{agent.url.removeprefix('http://')}']}}]\n"
    )
    argv = [
        which("prometheus") or "/usr/bin/prometheus",
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with service(argv, f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}/api/v1"


@contextlib.contextmanager
def service(argv: list[str], url: str, timeout: float = 30) -> Iterator[subprocess.Popen[bytes]]:
    """A Debian-packaged Prometheus tool, started fresh and stopped at the end."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or get(url)[0] == 200, timeout)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        yield proc
    finally:
        stop(proc, argv[0])


def lab_config(tmp: Path, lab: Lab, interval: str = "2s", extra: str = "", detail: bool = True) -> Path:
    """Every lab scenario as a target; detail metrics on unless asked (tests that read every family)."""
    lines = [
        f"interval: {interval}",
        "timeout: 3s",
        f"profile: {lab.directory}/lab-profile.yml",
        f"metrics: {{detail: {str(detail).lower()}}}",
        extra,
        "targets:",
    ]
    for s in lab.scenarios:
        lines += [f"  - target: {s.target}", f"    labels: {{scenario: {s.name}}}"]
    path = tmp / "relaywatch.yml"
    path.write_text("\n".join(lines) + "\n")
    return path
