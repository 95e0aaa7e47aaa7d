"""Start `relaywatch run` and the Prometheus tools it is tested with, as real processes on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def get(url: str, timeout: float = 10, **kw: object) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, **kw), timeout=timeout) as r:  # type: ignore[arg-type]
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@dataclass
class Agent:
    proc: subprocess.Popen[str]
    url: str
    config: Path

    def metrics(self) -> str:
        return get(self.url + "/metrics")[1]


@contextlib.contextmanager
def run_agent(config: Path, *args: str, ready: bool = True) -> Iterator[Agent]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relaywatch",
            "run",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            "--log.level",
            "debug",
            *args,
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    agent = Agent(proc, f"http://127.0.0.1:{port}", config)
    try:
        if ready:
            wait_for(lambda: proc.poll() is not None or get(agent.url + "/-/healthy")[0] == 200, 20)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield agent
    finally:
        stop(proc)


@contextlib.contextmanager
def prometheus(tmp: Path, agent: Agent) -> Iterator[str]:
    """A real Prometheus server scraping `agent` every second; yields its API base URL."""
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: relaywatch\n"
        f"    static_configs: [{{targets: ['{agent.url.removeprefix('http://')}']}}]\n"
    )
    argv = [
        shutil.which("prometheus") or "/usr/bin/prometheus",
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with service(argv, f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}/api/v1"


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM, then SIGKILL after a bounded wait."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def service(argv: list[str], url: str, timeout: float = 30) -> Iterator[subprocess.Popen[bytes]]:
    """A Debian-packaged Prometheus tool, started fresh and stopped at the end."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or get(url)[0] == 200, timeout)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        yield proc
    finally:
        stop(proc)


def lab_config(tmp: Path, lab, interval: str = "2s", extra: str = "") -> Path:  # type: ignore[no-untyped-def]
    lines = [
        f"interval: {interval}",
        "timeout: 3s",
        f"profile: {lab.directory}/lab-profile.yml",
        extra,
        "targets:",
    ]
    for s in lab.scenarios:
        lines += [f"  - target: {s.target}", f"    labels: {{scenario: {s.name}}}"]
    path = tmp / "relaywatch.yml"
    path.write_text("\n".join(lines) + "\n")
    return path
