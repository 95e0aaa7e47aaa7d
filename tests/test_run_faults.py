"""The agent on a bad day: its probe worker killed or frozen, a slow-client flood and oversized headers on
its web port under a low RLIMIT_NOFILE, a stalled Pushgateway at SIGTERM, broken configs at start and at
reload. Real processes on loopback."""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from relaywatch.lab.demo import Lab

from tests import support
from tests.agent_helpers import Agent, lab_config, run_agent
from tests.support import ROOT, agent_argv, free_port, get, stop, wait_for

pytestmark = pytest.mark.peers


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in support.samples(text, name)}


def all_probed(agent: Agent, lab: Lab) -> bool:
    text = agent.metrics()
    return all(f'target="{s.target}"' in text for s in lab.scenarios)


def worker_of(agent: Agent) -> psutil.Process | None:
    """The live probe worker, if there is one now (a killed one is gone, or a zombie until reaped)."""
    for c in psutil.Process(agent.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            if c.status() != psutil.STATUS_ZOMBIE and "relaywatch.run.worker" in c.cmdline():
                return c
    return None


def replaced(agent: Agent, old: psutil.Process) -> psutil.Process | None:
    new = worker_of(agent)
    return new if new is not None and new.pid != old.pid else None


class Watch(threading.Thread):
    """Scrapes every 0.3 s and checks, each time, that the intercepted target is still reported as
    intercepted and that no probe counter went down."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(daemon=True)
        self.agent, self.stop, self.scrapes = agent, threading.Event(), 0
        self.problems: list[str] = []
        self.last: dict[tuple[tuple[str, str], ...], float] = {}

    def run(self) -> None:
        while not self.stop.wait(0.3):
            try:
                status, text = get(self.agent.url + "/metrics", timeout=5)
            except OSError as exc:
                self.problems.append(f"scrape failed: {exc}")
                continue
            self.scrapes += 1
            shield = {
                dict(k)["address"]: v
                for k, v in samples(text, "relaywatch_interception_detected").items()
                if dict(k).get("scenario") == "mail-shield"
            }
            if status != 200 or shield.get("127.0.0.1") != 1.0:
                self.problems.append(f"intercepted target not reported: {shield}")
            for key, value in samples(text, "relaywatch_probes_total").items():
                if value < self.last.get(key, 0.0):
                    self.problems.append(f"counter went down: {key} {self.last[key]} -> {value}")
                self.last[key] = value


def test_worker_kill_and_stop_keep_the_series(lab: Lab, tmp_path: Path) -> None:
    cfg = lab_config(tmp_path, lab, interval="1s")
    cfg.write_text(cfg.read_text().replace("timeout: 3s", "timeout: 1s"))  # a hung call ends in 26 s
    with run_agent(cfg) as agent:
        wait_for(lambda: all_probed(agent, lab), 60)
        watch = Watch(agent)
        watch.start()
        try:
            worker = worker_of(agent)
            assert worker is not None
            worker.send_signal(signal.SIGSTOP)  # probes pile up in the frozen worker...
            time.sleep(2.5)
            worker.kill()  # ...and all fail at once when it dies
            frozen = wait_for(lambda: replaced(agent, worker), 20)
            assert isinstance(frozen, psutil.Process)
            time.sleep(3)  # the lost probes are recorded by now
            assert not watch.problems, watch.problems[:5]

            def failures() -> float:
                found = samples(agent.metrics(), "relaywatch_probe_worker_failures_total")
                return sum(v for k, v in found.items() if dict(k).get("scenario") == "mail-shield")

            wait_for(lambda: failures() >= 1, 20)
            frozen.send_signal(signal.SIGSTOP)  # hung: no answer until the agent gives up and kills it
            before = failures()
            wait_for(lambda: failures() > before, 60)
            wait_for(lambda: replaced(agent, frozen), 30)
            with contextlib.suppress(psutil.Error):
                frozen.kill()
            probes = watch.last.copy()
            wait_for(lambda: sum(watch.last.values()) > sum(probes.values()) + len(lab.scenarios), 30)
        finally:
            watch.stop.set()
            watch.join(10)
        assert watch.scrapes > 20 and not watch.problems, watch.problems[:5]
        text = agent.metrics()
        assert "relaywatch_probe_worker_restarts_total 2.0" in text


def _popen_agent(config: Path, nofile: int) -> tuple[subprocess.Popen[str], str]:
    port = free_port()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        agent_argv(config, f"127.0.0.1:{port}"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )
    return proc, f"http://127.0.0.1:{port}"


def _slow_clients(port: int, n: int, seconds: int) -> None:
    """n clients that each send a request one byte a second (bounded: `seconds` bytes each)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(2)
        with contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
            socks.append(s)
    try:
        for i in range(seconds):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.send(b"GET /metrics HTTP/1.1\r\nX-Slow: "[i : i + 1] or b"a")
            time.sleep(1)
    finally:
        for s in socks:
            s.close()


def _burst(url: str, n: int) -> list[int]:
    codes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one() -> None:
        start.wait(10)
        try:
            code = get(url + "/metrics", timeout=15)[0]
        except OSError:
            code = -1
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return codes


def _huge_headers(port: int, n: int, size: int) -> list[bytes]:
    answers: list[bytes] = []

    def one() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with contextlib.suppress(OSError):  # the server may close before reading it all
                s.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
            with contextlib.suppress(OSError):
                answers.append(s.recv(100))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_web_port_under_slow_clients_bursts_and_huge_headers(lab: Lab, tmp_path: Path) -> None:
    proc, url = _popen_agent(lab_config(tmp_path, lab, interval="5s"), nofile=256)
    port = int(url.rsplit(":", 1)[1])
    try:
        wait_for(
            lambda: (
                proc.poll() is not None or all(s.target in get(url + "/metrics")[1] for s in lab.scenarios)
            ),
            60,
        )
        assert proc.poll() is None
        me = psutil.Process(proc.pid)
        time.sleep(2)
        threads, fds, rss = me.num_threads(), me.num_fds(), me.memory_info().rss
        failures: list[str] = []
        done = threading.Event()

        def scrape() -> None:
            while not done.wait(0.5):
                try:
                    status, body = get(url + "/metrics", timeout=5)
                    if status != 200 or "relaywatch_build_info" not in body:
                        failures.append(f"status {status}")
                except OSError as exc:
                    failures.append(str(exc))

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        slow = threading.Thread(target=_slow_clients, args=(port, 300, 12), daemon=True)
        slow.start()
        time.sleep(3)
        codes = _burst(url, 200)
        answers = _huge_headers(port, 40, 160_000)  # 6.4 MB of headers at once
        grown = (me.memory_info().rss - rss) >> 20
        slow.join(30)
        done.set()
        scraper.join(10)
        assert not failures, failures[:5]
        assert codes.count(200) == 200, sorted(set(codes))
        assert answers and all(a.startswith(b"HTTP/1.1 431") for a in answers if a), answers[:3]
        assert grown < 30, f"main process grew by {grown} MB"
        wait_for(lambda: me.num_threads() <= threads and me.num_fds() <= fds + 2, 60)
    finally:
        stop(proc)
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


@contextlib.contextmanager
def stalled_gateway() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        t.join(2)
        for s in held:
            s.close()
        listener.close()


def test_sigterm_with_a_stalled_pushgateway_is_quick(lab: Lab, tmp_path: Path) -> None:
    with (
        stalled_gateway() as gateway,
        run_agent(lab_config(tmp_path, lab), "--push.gateway", gateway) as agent,
    ):
        wait_for(lambda: all_probed(agent, lab), 60)
        time.sleep(1.5)  # a push is under way, stalled
        start = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        rc = agent.proc.wait(20)
        took = time.monotonic() - start
    assert rc == 0 and took < 4.0, took


BAD_CONFIGS = {
    "long-profile": "targets:\n  - target: a.example:25\n    profile: " + "p" * 300 + "\n",
    "brackets": "targets: " + "[" * 5000 + "\n",
    "aliases": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\ntargets: *b\n",
}
BAD_WEB = {
    "not-utf8": b"basic_auth_users:\n  u: '\xff'\n",
    "tls-int": b"tls_server_config: 1\n",
    "cert-int": b"tls_server_config:\n  cert_file: 1\n  key_file: k\n",
}


@pytest.mark.parametrize("case", [*BAD_CONFIGS, *BAD_WEB])
def test_bad_input_at_start_is_exit_2_and_one_line(case: str, tmp_path: Path) -> None:
    cfg, web = tmp_path / "c.yml", tmp_path / "web.yml"
    cfg.write_text(BAD_CONFIGS.get(case, "targets: [a.example:25]\n"))
    web.write_bytes(BAD_WEB.get(case, b"{}\n"))
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "relaywatch", "run", "--config.file", str(cfg)),
            *("--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{free_port()}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("relaywatch: error: "), (
        proc.stderr
    )


def test_broken_reloads_keep_the_config_and_answer(lab: Lab, tmp_path: Path) -> None:
    cfg = lab_config(tmp_path, lab)
    good = cfg.read_text()
    with run_agent(cfg) as agent:
        wait_for(lambda: all_probed(agent, lab), 60)
        for bad in BAD_CONFIGS.values():
            cfg.write_text(bad)
            status, body = get(agent.url + "/-/reload", method="POST")
            assert status == 500 and body.startswith("failed to reload config: ") and body.count("\n") == 1
            agent.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
        assert agent.proc.poll() is None and all_probed(agent, lab)
        cfg.write_text(good)
        assert get(agent.url + "/-/reload", method="POST")[0] == 200
        stop(agent.proc)
        err = agent.proc.stderr.read() if agent.proc.stderr else ""
    assert "Traceback" not in err and err.count("reload refused") == 2 * len(BAD_CONFIGS), err[-3000:]


def test_basic_auth_failure_budget_answers_429(lab: Lab, tmp_path: Path) -> None:
    import base64

    import bcrypt

    web = tmp_path / "web.yml"
    web.write_text(
        f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}'\n"
    )
    with run_agent(lab_config(tmp_path, lab), "--web.config.file", str(web), ready=False) as agent:

        def fetch(user: str, password: str) -> int:
            auth = base64.b64encode(f"{user}:{password}".encode()).decode()
            return get(agent.url + "/-/healthy", headers={"Authorization": f"Basic {auth}"})[0]

        wait_for(lambda: fetch("prometheus", "pw") == 200, 20)
        codes = [fetch("nobody" if i % 2 else "prometheus", f"guess{i}") for i in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
        assert fetch("prometheus", "pw") == 200  # verified before: still served
