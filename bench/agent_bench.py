"""The long-running agent at scale: its memory, its /metrics latency, and how long a round of probes takes.

Why: the issue sets three goals for `relaywatch run` on a small (2-core) host:
  1. main-process RSS at most 40 MB with 100 targets, after 1,000 and after 10,000 probes, with no
     growth in between (a leak would show there);
  2. /metrics answers in at most 20 ms (median) with 1,000 target addresses;
  3. a round of 1,000 probes completes within one 60 s interval at the default concurrency (16).
Each is measured on the real agent (`python -m agent run`, what the `relaywatch` script runs) against lab
relays in a SEPARATE process, so the relays' CPU and memory are not the agent's. Probe counts and first
results come from the agent's own /metrics. The agent's probe worker (its child process doing TLS and the
analysis) is measured beside the main process, so memory moved there is still seen. Diagnostics explain
the figures: what each import costs in each process, which mappings make up the RSS, and where /metrics
time goes (the agent's cached rendering vs prometheus_client's generate_latest on 1,000 series).

    python3 bench/agent_bench.py [--quick] [--no-path] [--malloc-arena-max N] [--tracemalloc]

--no-path turns the agent's path traces off (config `path: {enabled: false}`); by default the agent runs
as shipped, path traces on. --malloc-arena-max N starts the agents with MALLOC_ARENA_MAX=N (glibc, the
worker inherits it). --tracemalloc runs the main process under tracemalloc and reads the memory Python's
allocators hold at each checkpoint (its RSS is then inflated by the tracing).

Prints tables and writes bench/results/agent_bench[_variant].json (_quick: reduced sizes, a smoke check,
not the goals' sizes). Exit 0 when the benchmark ran (whether or not the goals hold), non-zero when
something failed to run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import datetime as dt
import http.client
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import pstats
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the package is the repository's agent/
    sys.path.insert(0, str(ROOT))

from relaywatch.lab.pki import make_lab_pki  # noqa: E402

WEB_HOST = "127.0.0.1"
PORTS = range(28000, 29000)  # the only ports this benchmark may listen on
RESULTS = Path(__file__).resolve().parent / "results"
START_TIMEOUT = 30.0  # relay or agent coming up
HTTP_TIMEOUT = 30.0  # one /metrics request
MB = 1024 * 1024
PROBE_WORKER = "relaywatch.run.worker"  # the agent's long-lived child doing TLS and the analysis
PATH_WORKER = "relaywatch.path.worker"  # its short-lived children doing path traces

# the goals of the issue
RSS_GOAL_MB = 40.0
GROWTH_TOLERANCE_MB = 1.0  # "no growth": allocator noise below this is not growth
METRICS_GOAL_MS = 20.0
ROUND_GOAL_S = 60.0


@dataclass(frozen=True)
class Sizes:
    memory_targets: int
    checkpoints: tuple[int, int, int]  # probes at which memory is read: the goal's two, then a plateau check
    memory_interval: str
    scale_targets: int
    gets: int
    memory_deadline_s: float
    round_deadline_s: float
    gets_budget_s: float


FULL = Sizes(100, (1_000, 10_000, 20_000), "0.5s", 1_000, 200, 900.0, 300.0, 300.0)
QUICK = Sizes(50, (200, 1_000, 2_000), "0.5s", 100, 20, 120.0, 60.0, 60.0)


class BenchError(RuntimeError):
    """Something did not run: the benchmark exits non-zero with this message."""


def relay_hosts(n: int) -> list[str]:
    """n distinct loopback addresses (127.0.1.1, 127.0.1.2, ...): one relay listener per target."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


# ---------------------------------------------------------------- relays (child process)


def _serve_relays(directory: str, hosts: list[str], conn: Any, sessions: Any) -> None:
    """Child: one LabServer(Mail("smtp", ...)) per host, same port, until the parent closes the pipe.

    The servers' sockets are served by one epoll loop (LabServer.server.handle_request when readable)
    instead of LabServer's own threads: 1,000 serve_forever threads polling every 50 ms would burn a
    core of this 2-core host on wake-ups and slow the agent being measured. Connections are handled
    exactly as LabServer handles them (its handler: timeout, TCP_NODELAY, Mail), one thread each.
    """
    from relaywatch.lab.pki import Issued
    from relaywatch.lab.servers import LabServer, Mail, server_context

    d = Path(directory)

    mail = Mail("smtp", server_context(Issued.load(d, "relay"), [Issued.load(d, "issuing")]))

    def handle(sock: socket.socket, server: LabServer) -> None:
        try:
            mail(sock, server)
        finally:
            with sessions.get_lock():
                sessions.value += 1

    servers: list[LabServer] = []
    for port in PORTS:
        try:
            for host in hosts:
                servers.append(LabServer(handle, host, port))
        except OSError:
            for s in servers:
                s.server.server_close()
            servers = []
            continue
        break
    if not servers:
        conn.send(("error", f"no port in {PORTS.start}-{PORTS.stop - 1} free on all {len(hosts)} addresses"))
        return
    sel = selectors.DefaultSelector()
    for s in servers:
        s.server.timeout = 1.0  # handle_request never blocks longer, even on a spurious wake-up
        sel.register(s.server, selectors.EVENT_READ, s)
    sel.register(conn, selectors.EVENT_READ, None)
    conn.send(("port", servers[0].port))
    try:
        while True:
            for key, _ in sel.select(timeout=1.0):
                if key.data is None:  # a message or EOF from the parent: stop
                    return
                key.data.server.handle_request()
    finally:
        for s in servers:
            s.server.server_close()


@dataclass
class Relays:
    port: int
    pid: int
    hosts: list[str]
    sessions: Any  # multiprocessing.Value: sessions the relays finished

    def targets(self, n: int) -> list[str]:
        return [f"smtp://{h}:{self.port}" for h in self.hosts[:n]]

    def cpu_s(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return t.user + t.system


@contextlib.contextmanager
def relay_process(directory: Path, n: int) -> Iterator[Relays]:
    """The relay child; stopped through its pipe, then killed if it lingers."""
    ctx = multiprocessing.get_context("spawn")  # no inherited state from the benchmark process
    parent, child = ctx.Pipe()
    sessions = ctx.Value("Q", 0)
    hosts = relay_hosts(n)
    proc = ctx.Process(target=_serve_relays, args=(str(directory), hosts, child, sessions), daemon=True)
    proc.start()
    try:
        multiprocessing.connection.wait([parent, proc.sentinel], timeout=START_TIMEOUT)
        if not parent.poll():
            raise BenchError(f"lab relays did not start (waited {START_TIMEOUT:g} s, exit {proc.exitcode})")
        kind, value = parent.recv()
        if kind != "port":
            raise BenchError(f"lab relays: {value}")
        assert proc.pid is not None
        yield Relays(int(value), proc.pid, hosts, sessions)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        parent.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


# ---------------------------------------------------------------- the agent (child processes)


def free_port() -> int:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((WEB_HOST, port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free port in {PORTS.start}-{PORTS.stop - 1} on {WEB_HOST}")


@dataclass(frozen=True)
class AgentOptions:
    """How the agents under test are started: as shipped, or with one change to isolate a cause."""

    path: bool = True  # the agent's path traces (on by default in the agent)
    arena_max: int | None = None  # MALLOC_ARENA_MAX for the agent (its children inherit it)
    tracemalloc: bool = False  # memory run only: main process under tracemalloc, read at checkpoints


def write_config(
    path: Path, profile: Path, targets: Sequence[str], interval: str, concurrency: int, opts: AgentOptions
) -> Path:
    lines = [
        f"interval: {interval}",
        "timeout: 5s",
        f"profile: {profile}",
        f"concurrency: {concurrency}",
    ]
    if not opts.path:
        lines.append("path: {enabled: false}")
    lines.append("targets:")
    for i, t in enumerate(targets):
        lines += [f"  - target: {t}", f"    labels: {{site: s{i % 10}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    spawned_wall: float  # time.time() just before the process was started
    healthy_after_s: float  # spawn -> /-/healthy answered
    _worker: psutil.Process | None = None

    def get(self, path: str = "/metrics") -> tuple[int, bytes]:
        return http_get(WEB_HOST, self.port, path)

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def worker(self) -> psutil.Process | None:
        """The probe worker, if the agent has one (older agents probe in the main process)."""
        if self._worker is not None and self._worker.is_running():
            return self._worker
        self._worker = None
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children():
                if PROBE_WORKER in " ".join(child.cmdline()):
                    self._worker = child
        return self._worker

    def worker_cpu_s(self) -> float:
        w = self.worker()
        if w is None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            t = w.cpu_times()
            return t.user + t.system
        return 0.0

    def children_cpu_s(self) -> float:
        """CPU of the agent's finished children: its path workers (and a probe worker that died)."""
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.children_user + t.children_system


def http_get(host: str, port: int, path: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# `relaywatch run` under tracemalloc: for each CHECKPOINT.want file in DIR, CHECKPOINT.json with the
# memory Python's allocators hold (module code and objects), by file of allocation
_TRACEMALLOC_AGENT = """
import json, os, sys, threading, time, tracemalloc
tracemalloc.start(1)
directory = sys.argv[1]
def watch():
    while True:
        time.sleep(0.2)
        for name in os.listdir(directory):
            if not name.endswith('.want'):
                continue
            snap = tracemalloc.take_snapshot()
            cur, peak = tracemalloc.get_traced_memory()
            top = [{'file': str(s.traceback), 'mb': s.size / 2**20, 'count': s.count}
                   for s in snap.statistics('filename')[:12]]
            stem = os.path.join(directory, name[:-5])
            with open(stem + '.tmp', 'w') as f:
                json.dump({'traced_mb': cur / 2**20, 'peak_mb': peak / 2**20, 'top': top}, f)
            os.replace(stem + '.tmp', stem + '.json')
            os.unlink(stem + '.want')
threading.Thread(target=watch, daemon=True).start()
sys.argv = ['relaywatch', *sys.argv[2:]]
from relaywatch.cli import main
sys.exit(main())
"""


@contextlib.contextmanager
def agent_process(
    config: Path, log: Path, opts: AgentOptions, trace_dir: Path | None = None
) -> Iterator[Agent]:
    """`relaywatch run` on 127.0.0.1 (python -m agent: the console script's code); SIGTERM, then kill.

    Its workers are the agent's to stop (it stops them on SIGTERM); any still alive after the agent has
    gone are killed by pid, so nothing this benchmark started outlives it."""
    port = free_port()
    run = ["run", "--config.file", str(config), "--web.listen-address", f"{WEB_HOST}:{port}"]
    run += ["--state.dir", str(log.parent / "state")]
    run += ["--log.level", "warn"]
    if trace_dir is not None:
        argv = [sys.executable, "-c", _TRACEMALLOC_AGENT, str(trace_dir), *run]
    else:
        argv = [sys.executable, "-m", "relaywatch", *run]
    env = dict(os.environ)
    if opts.arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(opts.arena_max)
    with log.open("wb") as err:
        spawned = time.time()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
        )
        children: list[psutil.Process] = []
        try:
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"agent exited {proc.returncode}: {_tail(log)}")
                with contextlib.suppress(OSError):
                    if http_get(WEB_HOST, port, "/-/healthy", timeout=2)[0] == 200:
                        break
                if time.monotonic() - t0 > START_TIMEOUT:
                    raise BenchError(f"agent not healthy within {START_TIMEOUT:g} s: {_tail(log)}")
                time.sleep(0.05)
            yield Agent(proc, port, spawned, time.monotonic() - t0)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(proc.pid).children(recursive=True)
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            for child in children:  # psutil checks the start time: never another process with the pid
                with contextlib.suppress(psutil.Error):
                    child.kill()


def _tail(path: Path, chars: int = 800) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:].strip()
    return ""


# ---------------------------------------------------------------- reading /metrics and memory

_TARGET = re.compile(r'target="([^"]*)"')
_VERDICT = re.compile(r'verdict="([^"]*)"')


@dataclass
class Scrape:
    samples: int = 0
    probes: float = 0.0  # sum of relaywatch_probes_total
    last: dict[str, float] = field(default_factory=dict)  # target -> last probe start (Unix time)
    total: dict[str, float] = field(default_factory=dict)  # target -> that probe's total duration
    verdicts: collections.Counter[str] = field(default_factory=collections.Counter)
    paths: int = 0  # addresses with a path trace result


def parse_metrics(body: bytes) -> Scrape:
    """Only what the benchmark needs; one address per target here, so target is the key."""
    s = Scrape()
    for line in body.decode("utf-8", "replace").splitlines():
        if not line or line[0] == "#":
            continue
        s.samples += 1
        name, _, value = line.rpartition(" ")
        if name.startswith("relaywatch_probes_total{"):
            s.probes += float(value)
        elif name.startswith("relaywatch_last_probe_timestamp_seconds{"):
            if m := _TARGET.search(name):
                s.last[m.group(1)] = max(s.last.get(m.group(1), 0.0), float(value))
        elif name.startswith("relaywatch_probe_duration_seconds{") and 'phase="total"' in name:
            if m := _TARGET.search(name):
                s.total[m.group(1)] = float(value)
        elif name.startswith("relaywatch_verdict{") and float(value) == 1.0 and (m := _VERDICT.search(name)):
            s.verdicts[m.group(1)] += 1
        elif name.startswith("relaywatch_path_status{") and float(value) == 1.0:
            s.paths += 1
    return s


def scrape(agent: Agent) -> Scrape:
    status, body = agent.get()
    if status != 200:
        raise BenchError(f"/metrics answered HTTP {status}")
    return parse_metrics(body)


def memory(proc: psutil.Process) -> dict[str, float]:
    """RSS, USS, PSS (MB) and threads of one process (psutil memory_full_info: /proc/PID/smaps)."""
    full = proc.memory_full_info()
    return {
        "rss_mb": full.rss / MB,
        "uss_mb": full.uss / MB,
        "pss_mb": full.pss / MB,
        "threads": float(proc.num_threads()),
    }


def top_mappings(proc: psutil.Process, n: int = 12) -> list[dict[str, Any]]:
    """Where the RSS is: mappings grouped by file ([heap], anonymous, each shared library)."""
    rows = sorted(proc.memory_maps(grouped=True), key=lambda m: m.rss, reverse=True)[:n]
    return [
        {
            "path": m.path or "[anonymous]",
            "rss_mb": m.rss / MB,
            "private_mb": (m.private_clean + m.private_dirty) / MB,
            "anonymous_mb": m.anonymous / MB,
        }
        for m in rows
    ]


def smaps_split(pid: int) -> dict[str, float]:
    """Anonymous (heap, stacks, Python objects) vs file-backed (code of the interpreter and libraries)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0]) / 1024
    return out


def snapshot(proc: psutil.Process, mappings: int = 12) -> dict[str, Any]:
    return {**memory(proc), **smaps_split(proc.pid), "mappings": top_mappings(proc, mappings)}


def agent_memory(agent: Agent, mappings: int = 12) -> dict[str, Any]:
    """The main process (the goal's figure), its probe worker, and both together (PSS and USS add up;
    RSS does not, shared pages would count twice)."""
    main = snapshot(psutil.Process(agent.proc.pid), mappings)
    w = agent.worker()
    worker = None
    with contextlib.suppress(psutil.Error):
        worker = snapshot(w, mappings) if w is not None else None
    out: dict[str, Any] = {**main, "worker": worker}
    out["total_pss_mb"] = main["pss_mb"] + (worker["pss_mb"] if worker else 0.0)
    out["total_uss_mb"] = main["uss_mb"] + (worker["uss_mb"] if worker else 0.0)
    return out


# ---------------------------------------------------------------- goal 1: memory


def goal_memory(
    relays: Relays, directory: Path, profile: Path, sizes: Sizes, opts: AgentOptions
) -> dict[str, Any]:
    """100 targets probed back to back; memory read when the probe count passes each checkpoint."""
    n = sizes.memory_targets
    cfg = write_config(directory / "memory.yml", profile, relays.targets(n), sizes.memory_interval, 16, opts)
    trace: list[dict[str, float]] = []
    at: dict[str, Any] = {}
    pending = list(sizes.checkpoints)
    trace_dir = directory / "tracemalloc" if opts.tracemalloc else None
    if trace_dir is not None:
        trace_dir.mkdir()
    with agent_process(cfg, directory / "agent-memory.log", opts, trace_dir) as agent:
        t0 = time.monotonic()
        cpu0, worker0, relay0 = agent.cpu_s(), agent.worker_cpu_s(), relays.cpu_s()
        paths0 = agent.children_cpu_s()
        last = Scrape()
        while pending:
            if time.monotonic() - t0 > sizes.memory_deadline_s:
                raise BenchError(
                    f"memory run: {last.probes:.0f} probes after {sizes.memory_deadline_s:g} s, "
                    f"wanted {sizes.checkpoints[-1]}"
                )
            last = scrape(agent)
            main = memory(psutil.Process(agent.proc.pid))
            w = agent.worker()
            worker_rss = float("nan")
            with contextlib.suppress(psutil.Error):
                worker_rss = w.memory_info().rss / MB if w is not None else float("nan")
            trace.append(
                {"s": time.monotonic() - t0, "probes": last.probes, **main, "worker_rss_mb": worker_rss}
            )
            while pending and last.probes >= pending[0]:
                cp = pending.pop(0)
                at[str(cp)] = {"probes": last.probes, "seconds": time.monotonic() - t0, **agent_memory(agent)}
                if trace_dir is not None:
                    at[str(cp)]["tracemalloc"] = _python_memory(trace_dir, cp)
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        probes = max(1.0, last.probes)
        cpu, worker_cpu = agent.cpu_s() - cpu0, agent.worker_cpu_s() - worker0
        relay_cpu, path_cpu = relays.cpu_s() - relay0, agent.children_cpu_s() - paths0
        verdicts, paths = dict(last.verdicts), last.paths
    lo, hi, end = (at[str(c)] for c in sizes.checkpoints)
    after = [t for t in trace if t["probes"] >= sizes.checkpoints[0]]
    slope = None
    if len(after) >= 3 and after[-1]["probes"] > after[0]["probes"]:
        fit = statistics.linear_regression([t["probes"] for t in after], [t["rss_mb"] for t in after])
        slope = fit.slope * 1000 * 1024  # KB per 1,000 probes
    return {
        "targets": n,
        "interval": sizes.memory_interval,
        "concurrency": 16,
        "checkpoints": at,
        "growth_rss_mb": hi["rss_mb"] - lo["rss_mb"],
        "growth_uss_mb": hi["uss_mb"] - lo["uss_mb"],
        "growth_rss_mb_after_second": end["rss_mb"] - hi["rss_mb"],  # warm-up or leak?
        "rss_slope_kb_per_1000_probes": slope,
        "probes_per_s": last.probes / elapsed,
        "main_cpu_ms_per_probe": cpu * 1000 / probes,
        "worker_cpu_ms_per_probe": worker_cpu * 1000 / probes,
        "relay_cpu_ms_per_probe": relay_cpu * 1000 / probes,
        "path_workers_cpu_s": path_cpu,
        "addresses_with_path_result": paths,
        "verdicts": verdicts,
        "options": opts.__dict__,
        "trace": trace,
    }


def _python_memory(trace_dir: Path, checkpoint: int, timeout: float = 60.0) -> dict[str, Any]:
    """Ask the traced agent for what Python's allocators hold now (see _TRACEMALLOC_AGENT)."""
    (trace_dir / f"{checkpoint}.want").touch()
    answer = trace_dir / f"{checkpoint}.json"
    deadline = time.monotonic() + timeout
    while not answer.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"tracemalloc snapshot at {checkpoint} probes: no answer in {timeout:g} s")
        time.sleep(0.1)
    return dict(json.loads(answer.read_text()))


# ---------------------------------------------------------------- goals 2 and 3: 1,000 targets


def goal_round(
    relays: Relays,
    directory: Path,
    profile: Path,
    n: int,
    concurrency: int,
    sizes: Sizes,
    opts: AgentOptions,
    gets: int = 0,
) -> dict[str, Any]:
    """Start the agent with n targets and a long interval (one round only); time until every target has
    a first result. The end is exact: max over targets of (probe start + probe duration) from /metrics,
    so how often the benchmark looks does not matter. With gets > 0, then time /metrics (goal 2)."""
    cfg = write_config(
        directory / f"round-{concurrency}.yml", profile, relays.targets(n), "1h", concurrency, opts
    )
    base = relays.sessions.value
    relay0 = relays.cpu_s()
    opts = AgentOptions(opts.path, opts.arena_max)  # never traced: tracemalloc would slow the round
    others = HostCpu()
    with agent_process(cfg, directory / f"agent-round-{concurrency}.log", opts) as agent:
        t0 = time.monotonic()
        # cheap wait first: the relays count finished sessions, no agent CPU spent on scrapes
        while relays.sessions.value - base < n and time.monotonic() - t0 < sizes.round_deadline_s:
            time.sleep(0.05)
        while True:
            s = scrape(agent)
            if len(s.last) >= n and len(s.total) >= n:
                break
            if time.monotonic() - t0 > sizes.round_deadline_s:
                raise BenchError(
                    f"round with concurrency {concurrency}: {len(s.last)}/{n} targets have a result "
                    f"after {sizes.round_deadline_s:g} s"
                )
            time.sleep(0.5)
        seen_s = time.monotonic() - t0 + agent.healthy_after_s
        first = min(s.last.values())
        end = max(s.last[t] + s.total.get(t, 0.0) for t in s.last)
        out: dict[str, Any] = {
            "targets": n,
            "concurrency": concurrency,
            "start_to_all_results_s": end - agent.spawned_wall,
            "start_to_first_probe_s": first - agent.spawned_wall,
            "first_probe_to_last_result_s": end - first,
            "healthy_after_s": agent.healthy_after_s,
            "seen_by_benchmark_after_s": seen_s,
            "probe_total_s_median": statistics.median(s.total.values()),
            "probe_total_s_max": max(s.total.values()),
            "main_cpu_s": agent.cpu_s(),
            "worker_cpu_s": agent.worker_cpu_s(),
            "path_workers_cpu_s": agent.children_cpu_s(),
            "relay_cpu_s": relays.cpu_s() - relay0,
            "other_processes_cpu_share": others.share(),
            "verdicts": dict(s.verdicts),
            "samples_in_metrics": s.samples,
            "memory_after_round": agent_memory(agent, mappings=6),
        }
        if gets:
            others, paths0 = HostCpu(), agent.children_cpu_s()
            out["metrics"] = time_metrics(agent, gets, sizes.gets_budget_s)
            out["metrics"]["other_processes_cpu_share"] = others.share()
            out["metrics"]["path_workers_cpu_s"] = agent.children_cpu_s() - paths0
            out["addresses_with_path_result"] = scrape(agent).paths
    return out


def time_metrics(agent: Agent, gets: int, budget_s: float) -> dict[str, Any]:
    """Sequential GET /metrics, a new connection each (as the agent's HTTP/1.0 server closes it)."""
    for _ in range(3):  # warm-up, unmeasured
        agent.get()
    wall: list[float] = []
    body = b""
    cpu0, t0 = agent.cpu_s(), time.monotonic()
    for _ in range(gets):
        if time.monotonic() - t0 > budget_s:
            break
        w0 = time.perf_counter()
        status, body = agent.get()
        wall.append((time.perf_counter() - w0) * 1000)
        if status != 200:
            raise BenchError(f"/metrics answered HTTP {status}")
    cpu = agent.cpu_s() - cpu0
    ordered = sorted(wall)
    return {
        "gets": len(wall),
        "ms_median": statistics.median(ordered),
        "ms_p90": _quantile(ordered, 0.90),
        "ms_min": ordered[0],
        "ms_max": ordered[-1],
        "main_cpu_ms_per_get": cpu * 1000 / len(wall),
        "bytes": len(body),
        "samples": parse_metrics(body).samples,
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- diagnostics: imports

# (label, module whose presence says the agent loads it, import code), in the order they load
IMPORT_CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("ssl + http.client (system OpenSSL)", "ssl", "import ssl, http.client"),
    ("http.server", "http.server", "import http.server"),
    ("asyncio (pyOpenSSL's typing_extensions)", "asyncio", "import asyncio"),
    (
        "concurrent.futures, logging.handlers",
        "concurrent.futures",
        "import concurrent.futures, logging.handlers",
    ),
    ("argparse", "argparse", "import argparse"),
    ("yaml (PyYAML)", "yaml", "import yaml"),
    ("certifi", "certifi", "import certifi"),
    ("prometheus_client", "prometheus_client", "import prometheus_client"),
    ("psutil", "psutil", "import psutil"),
    ("bcrypt", "bcrypt", "import bcrypt"),
    ("cryptography.x509 (Rust, own OpenSSL)", "cryptography.x509", "from cryptography import x509"),
    (
        "cryptography verification + hazmat",
        "cryptography.x509.verification",
        "from cryptography.x509 import verification; from cryptography.hazmat.primitives import hashes",
    ),
    ("pyOpenSSL", "OpenSSL.SSL", "from OpenSSL import SSL"),
    ("scapy", "scapy", "import scapy.all"),
)
# (process, what its entry point imports, what it loads before its first probe)
IMPORT_PROCESSES: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("main process (relaywatch run)", "import relaywatch.cli, relaywatch.run.agent", ()),
    (
        f"probe worker ({PROBE_WORKER})",
        f"import {PROBE_WORKER}",
        (
            (
                "host trust store loaded",
                "from relaywatch.analysis.truststore import host_store; host_store()",
            ),
            (
                "built-in profile loaded",
                "from relaywatch.analysis.profile import load_profile; load_profile('microsoft365')",
            ),
        ),
    ),
)

_IMPORT_CHILD = """
import json, sys
def rss():
    out = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('VmRSS', 'RssAnon', 'RssFile'):
            out[k] = int(v.split()[0]) / 1024
    return out
steps, probe = json.loads(sys.argv[1])
for name, code in steps:
    try:
        exec(code, {})
        err = None
    except Exception as exc:
        err = repr(exc)
    print(json.dumps({'step': name, 'error': err, **rss()}), flush=True)
print(json.dumps({'loaded': [m for m in probe if m in sys.modules]}), flush=True)
"""


def _run_import_child(
    steps: Sequence[tuple[str, str]], probe: Sequence[str], flags: Sequence[str] = ()
) -> Any:
    proc = subprocess.run(
        [sys.executable, *flags, "-c", _IMPORT_CHILD, json.dumps([steps, probe])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"import breakdown failed: {proc.stderr[-800:]}")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return lines[:-1], lines[-1]["loaded"]


def import_breakdown() -> dict[str, Any]:
    """RSS after each import in a fresh interpreter, per process of the agent, in the order they load.

    First which heavy modules the process's entry point loads at all, then those one by one (RSS read
    from /proc/self/status: nothing else is imported to measure). `python -S` (no site, no .pth hooks)
    is the interpreter's own floor, for reference."""
    modules = [m for _, m, _ in IMPORT_CANDIDATES]
    bare, _ = _run_import_child([("python -S", "pass")], [], ["-S"])
    out: dict[str, Any] = {"python_S_mb": bare[0]["VmRSS"], "processes": {}}
    for process, entry, extra in IMPORT_PROCESSES:
        _, loaded = _run_import_child([("entry", entry)], modules)
        steps = [("python interpreter (site, .pth hooks)", "pass")]
        steps += [(label, code) for label, module, code in IMPORT_CANDIDATES if module in loaded]
        steps += [("the agent's own modules", entry), *extra]
        rows, _ = _run_import_child(steps, [])
        previous = 0.0
        for row in rows:
            row["delta_mb"] = row["VmRSS"] - previous
            previous = row["VmRSS"]
        out["processes"][process] = {"loaded": loaded, "steps": rows}
    return out


# ---------------------------------------------------------------- diagnostics: /metrics


def profile_metrics(relays: Relays, profile: Path, n: int) -> dict[str, Any]:
    """Where /metrics time goes, in-process on n synthetic series that each carry a real result of a probe
    of the lab relay: the agent's own path (each series rendered when recorded, joined per scrape) next
    to prometheus_client's generate_latest over the same families (every sample formatted per scrape),
    and what serving a ready body of that size costs. The agent's internals may move: then this says
    why it could not run instead of failing the benchmark."""
    try:
        return _profile_metrics(relays, profile, n)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _profile_metrics(relays: Relays, profile: Path, n: int) -> dict[str, Any]:
    from prometheus_client import generate_latest
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry
    from relaywatch.analysis.profile import load_profile
    from relaywatch.export import exposition, metrics
    from relaywatch.pipeline import check
    from relaywatch.probe.options import ProbeOptions
    from relaywatch.run.series import Series
    from relaywatch.target import parse_target

    results = check(parse_target(relays.targets(1)[0]), load_profile(str(profile)), ProbeOptions())
    if not results or str(results[0].verdict) != "ok":
        raise BenchError(f"probe for the /metrics profile: {[str(r.verdict) for r in results]}")
    r = results[0]
    labels = ("site",)
    series = []
    for i, t in enumerate(relay_hosts(n)):
        s = Series(f"smtp://{t}:{relays.port}", t, {"site": f"s{i % 10}"}, r)
        s.observe(r)
        series.append(s)

    def timed(fn: Any, runs: int = 7) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    # the agent's path: Series.render when a probe is recorded, exposition.expose per scrape
    t0 = time.perf_counter()
    for s in series:
        s.render(None, labels)
    render_ms = (time.perf_counter() - t0) * 1000 / n

    def agent_body() -> bytes:
        info = metrics.info_families([("lab", "lab")])
        layout = metrics.series_layout(labels)
        rendered: list[Any] = [s.rendered for s in series]  # str or bytes, as the agent keeps them
        return bytes(exposition.expose(info, layout, rendered, metrics.host_families(None)))

    body = agent_body()
    expose_ms = timed(agent_body)
    prof = cProfile.Profile()
    prof.enable()
    agent_body()
    prof.disable()

    # lines cached as text would make each scrape encode the whole body as well
    layout_names = [m.name for m in metrics.series_layout(labels)]
    cached_as = type(next(iter(series[0].rendered.values()), b"")).__name__

    # without any cache: generate_latest over metrics.families, as the agent did before
    class Families(Collector):
        def collect(self) -> Iterator[Metric]:
            return metrics.families(series, labels)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())
    uncached_ms = timed(lambda: generate_latest(registry), runs=3)
    families_ms = timed(lambda: list(metrics.families(series, labels)), runs=3)
    per_family = {name: _lines(series[0].rendered.get(name, b"")) for name in layout_names}
    return {
        "series": n,
        "samples": sum(1 for line in body.splitlines() if line and not line.startswith(b"#")),
        "bytes": len(body),
        "samples_per_series_by_family": per_family,
        "render_ms_per_series": render_ms,
        "expose_ms_median": expose_ms,
        "expose_top": _top(prof, 8),
        "cached_as": cached_as,
        "uncached_generate_latest_ms_median": uncached_ms,
        "uncached_families_ms_median": families_ms,
        "http_floor_ms_median": serve_bytes(body, 30),
    }


def _lines(text: str | bytes) -> int:
    return text.count(b"\n") if isinstance(text, bytes) else text.count("\n")


def _top(prof: cProfile.Profile, n: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({func})" if line else func
        rows.append(
            {"function": where, "calls": ncalls, "tottime_ms": tottime * 1000, "cumtime_ms": cumtime * 1000}
        )
    rows.sort(key=lambda x: x["tottime_ms"], reverse=True)
    return rows[:n]


def serve_bytes(body: bytes, gets: int) -> float:
    """Median ms to GET a ready body from a stdlib ThreadingHTTPServer, as the agent's web server is:
    the floor of /metrics for this body size, whatever renders it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((WEB_HOST, free_port()), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        times = []
        for _ in range(gets):
            t0 = time.perf_counter()
            status, got = http_get(WEB_HOST, server.server_address[1], "/metrics")
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200 or len(got) != len(body):
                raise BenchError("serving a ready body failed")
        return statistics.median(times)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- report


class HostCpu:
    """The share of the host's CPU capacity that processes outside this benchmark (itself, the relays,
    the agents and their children) used since creation: other work on a shared host makes timings
    pessimistic, and the report says so."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.monotonic(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))

    @staticmethod
    def _own() -> float:
        """This process and every descendant, with the children each has already reaped."""
        me = psutil.Process()
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def share(self) -> float:
        elapsed = max(1e-6, time.monotonic() - self.t0) * (psutil.cpu_count() or 1)
        return max(0.0, (self._busy() - self.busy0) - (self._own() - self.own0)) / elapsed


def _mark(ok: bool) -> str:
    return "HOLDS" if ok else "DOES NOT HOLD"


def _busy(what: str, share: float) -> None:
    """Timings taken while other work ran are pessimistic: say so next to them."""
    if share > 0.10:
        print(
            f"   NOTE: processes outside the benchmark used {share:.0%} of the host's CPU during {what}: "
            "these timings are pessimistic"
        )


def _nan(d: dict[str, Any] | None, key: str) -> float:
    return float(d.get(key, float("nan"))) if d else float("nan")


def report_memory(res: dict[str, Any], sizes: Sizes) -> None:
    mem = res["memory"]
    cps = sizes.checkpoints
    lo, hi, end = (mem["checkpoints"][str(c)] for c in cps)
    opts = mem["options"]
    print(
        f"\n1. Agent memory, {mem['targets']} targets, interval {mem['interval']}, concurrency 16 "
        f"(path traces {'on' if opts['path'] else 'off'}, MALLOC_ARENA_MAX {opts['arena_max'] or 'unset'}"
        f"{', main process under tracemalloc: its RSS inflated' if opts['tracemalloc'] else ''})"
    )
    print(
        f"{'':34}{f'~{cps[0]:,} probes':>14}{f'~{cps[1]:,}':>10}{'growth':>9}"
        f"{f'~{cps[2]:,}':>10}{'growth':>9}"
    )

    def row(label: str, a: float, b: float, c: float, fmt: str = ".1f") -> None:
        print(f"{label:34}{a:>14{fmt}}{b:>10{fmt}}{b - a:>+9{fmt}}{c:>10{fmt}}{c - b:>+9{fmt}}")

    row("probes (from /metrics)", lo["probes"], hi["probes"], end["probes"], ".0f")
    for key, label in (
        ("rss_mb", "main RSS MB (the goal)"),
        ("uss_mb", "main USS MB"),
        ("pss_mb", "main PSS MB"),
        ("RssAnon", "main anonymous RSS MB"),
        ("RssFile", "main file-backed RSS MB"),
    ):
        row(label, lo[key], hi[key], end[key])
    row("main threads", lo["threads"], hi["threads"], end["threads"], ".0f")
    if "tracemalloc" in lo:
        a, b, c = (x["tracemalloc"]["traced_mb"] for x in (lo, hi, end))
        row("main, Python allocations MB", a, b, c)
    if lo.get("worker"):
        for key, label in (("rss_mb", "probe worker RSS MB"), ("uss_mb", "probe worker USS MB")):
            row(label, _nan(lo["worker"], key), _nan(hi["worker"], key), _nan(end["worker"], key))
        row(
            "probe worker threads",
            _nan(lo["worker"], "threads"),
            _nan(hi["worker"], "threads"),
            _nan(end["worker"], "threads"),
            ".0f",
        )
    row("main + worker PSS MB", lo["total_pss_mb"], hi["total_pss_mb"], end["total_pss_mb"])
    row("main + worker USS MB", lo["total_uss_mb"], hi["total_uss_mb"], end["total_uss_mb"])
    slope = mem["rss_slope_kb_per_1000_probes"]
    print(
        f"main RSS trend after {cps[0]:,} probes: "
        f"{'-' if slope is None else f'{slope:+.1f} KB per 1,000 probes'}; "
        f"{mem['probes_per_s']:.0f} probes/s; CPU per probe: main {mem['main_cpu_ms_per_probe']:.2f} ms, "
        f"worker {mem['worker_cpu_ms_per_probe']:.2f} ms, relays {mem['relay_cpu_ms_per_probe']:.2f} ms"
    )
    print(
        f"path workers (short-lived children): {mem['path_workers_cpu_s']:.1f} CPU s over the run, "
        f"{mem['addresses_with_path_result']} addresses traced; verdicts {mem['verdicts']}"
    )
    for who, snap in (("main", hi), ("probe worker", hi.get("worker"))):
        if snap:
            print(f"\n   {who}: largest mappings at ~{cps[1]:,} probes (RSS MB, private MB):")
            for m in snap["mappings"][:7]:
                print(f"   {m['rss_mb']:7.1f} {m['private_mb']:7.1f}  {m['path']}")
    if "tracemalloc" in hi:
        print(f"\n   main: Python allocations at ~{cps[1]:,} probes by file (MB):")
        for r in hi["tracemalloc"]["top"][:8]:
            print(f"   {r['mb']:7.2f}  {r['file']}")
    imports = res["imports"]
    print(f"\n   import cost in a fresh interpreter (`python -S` alone: {imports['python_S_mb']:.1f} MB RSS)")
    for process, data in imports["processes"].items():
        print(f"   {process}: RSS MB after each step, the step's own cost")
        for r in data["steps"]:
            err = f"  ({r['error']})" if r.get("error") else ""
            print(f"   {r['VmRSS']:7.1f} {r['delta_mb']:+7.1f}  {r['step']}{err}")


def report_metrics(res: dict[str, Any]) -> None:
    r16 = res["round_16"]
    m = r16["metrics"]
    print(
        f"\n2. /metrics with {r16['targets']:,} targets ({m['samples']:,} samples, "
        f"{m['bytes'] / MB:.1f} MB), {m['gets']} sequential GETs, agent idle between rounds"
    )
    print(
        f"   median {m['ms_median']:.1f} ms, p90 {m['ms_p90']:.1f} ms, min {m['ms_min']:.1f}, "
        f"max {m['ms_max']:.1f}; main-process CPU {m['main_cpu_ms_per_get']:.1f} ms per GET"
    )
    print(f"   the agent's path workers ran beside: {m['path_workers_cpu_s']:.1f} CPU s during the GETs")
    _busy("the GETs", m["other_processes_cpu_share"])
    prof = res["metrics_profile"]
    if "error" in prof:
        print(f"   (in-process profile unavailable: {prof['error']})")
        return
    print(
        f"   in-process, {prof['series']:,} synthetic series ({prof['samples']:,} samples, "
        f"{prof['bytes'] / MB:.1f} MB):"
    )
    print(f"   {prof['render_ms_per_series']:8.2f} ms  Series.render, once per recorded probe")
    also = ", so each scrape also encodes the body" if prof["cached_as"] == "str" else ""
    print(
        f"   {prof['expose_ms_median']:8.1f} ms  exposition.expose, per scrape "
        f"(the agent's path; lines cached as {prof['cached_as']}{also})"
    )
    print(
        f"   {prof['http_floor_ms_median']:8.1f} ms  serving a ready body of this size (stdlib HTTP server)"
    )
    print(
        f"   {prof['uncached_generate_latest_ms_median']:8.1f} ms  generate_latest over families(), no cache "
        f"(families() alone {prof['uncached_families_ms_median']:.1f} ms)"
    )
    print(
        "   expose, top by own time: "
        + "; ".join(f"{r['function']} {r['tottime_ms']:.1f} ms" for r in prof["expose_top"][:4])
    )
    per = prof["samples_per_series_by_family"]
    print(
        f"   samples per target by family ({sum(per.values())}): "
        + ", ".join(f"{k.removeprefix('relaywatch_')} {v}" for k, v in per.items() if v)
    )


def report_rounds(res: dict[str, Any]) -> None:
    r16, r64 = res["round_16"], res["round_64"]
    print(f"\n3. A round of {r16['targets']:,} probes from agent start (process spawn)")
    print(f"{'':38}{'concurrency 16':>16}{'concurrency 64':>16}")
    for key, label in (
        ("start_to_all_results_s", "start -> all results, s"),
        ("start_to_first_probe_s", "start -> first probe, s"),
        ("first_probe_to_last_result_s", "first probe -> last result, s"),
        ("probe_total_s_median", "probe duration median, s"),
        ("probe_total_s_max", "probe duration max, s"),
        ("main_cpu_s", "main-process CPU, s"),
        ("worker_cpu_s", "probe worker CPU, s"),
        ("path_workers_cpu_s", "path workers' CPU (finished), s"),
        ("relay_cpu_s", "relays' CPU, s"),
    ):
        print(f"{label:38}{r16[key]:>16.2f}{r64[key]:>16.2f}")
    for key, label in (("rss_mb", "main RSS after the round, MB"), ("total_pss_mb", "main + worker PSS, MB")):
        print(f"{label:38}{r16['memory_after_round'][key]:>16.1f}{r64['memory_after_round'][key]:>16.1f}")
    print(f"verdicts: {r16['verdicts']} / {r64['verdicts']}")
    _busy("the rounds", max(r16["other_processes_cpu_share"], r64["other_processes_cpu_share"]))


def report(res: dict[str, Any], sizes: Sizes, quick: bool) -> dict[str, bool]:
    report_memory(res, sizes)
    report_metrics(res)
    report_rounds(res)
    mem, r16, r64 = res["memory"], res["round_16"], res["round_64"]
    lo_n, hi_n, _ = sizes.checkpoints
    lo, hi = mem["checkpoints"][str(lo_n)], mem["checkpoints"][str(hi_n)]
    m = r16["metrics"]
    goals = {
        "rss_le_40mb_after_first_checkpoint": lo["rss_mb"] <= RSS_GOAL_MB,
        "rss_le_40mb_after_second_checkpoint": hi["rss_mb"] <= RSS_GOAL_MB,
        "no_rss_growth_between_checkpoints": hi["rss_mb"] - lo["rss_mb"] <= GROWTH_TOLERANCE_MB,
        "metrics_median_le_20ms": m["ms_median"] <= METRICS_GOAL_MS,
        "round_le_60s_concurrency_16": r16["start_to_all_results_s"] <= ROUND_GOAL_S,
        "round_le_60s_concurrency_64": r64["start_to_all_results_s"] <= ROUND_GOAL_S,
        "all_verdicts_ok": all(set(x) <= {"ok"} for x in (mem["verdicts"], r16["verdicts"], r64["verdicts"])),
    }
    lines = (
        (
            f"main RSS <= {RSS_GOAL_MB:g} MB after {lo_n:,} probes",
            "rss_le_40mb_after_first_checkpoint",
            f"{lo['rss_mb']:.1f} MB",
        ),
        (
            f"main RSS <= {RSS_GOAL_MB:g} MB after {hi_n:,} probes",
            "rss_le_40mb_after_second_checkpoint",
            f"{hi['rss_mb']:.1f} MB",
        ),
        (
            f"no main RSS growth (<= {GROWTH_TOLERANCE_MB:g} MB)",
            "no_rss_growth_between_checkpoints",
            f"{hi['rss_mb'] - lo['rss_mb']:+.2f} MB",
        ),
        (f"/metrics median <= {METRICS_GOAL_MS:g} ms", "metrics_median_le_20ms", f"{m['ms_median']:.1f} ms"),
        (
            f"round <= {ROUND_GOAL_S:g} s, concurrency 16",
            "round_le_60s_concurrency_16",
            f"{r16['start_to_all_results_s']:.1f} s",
        ),
        (
            f"round <= {ROUND_GOAL_S:g} s, concurrency 64",
            "round_le_60s_concurrency_64",
            f"{r64['start_to_all_results_s']:.1f} s",
        ),
        ("every verdict ok (the lab worked)", "all_verdicts_ok", ""),
    )
    print("\nGoals" + (" (QUICK: reduced sizes, a smoke check only)" if quick else "") + ":")
    for label, key, figure in lines:
        print(f"  {label:42}{_mark(goals[key]):>15}  {figure}")
    if hi.get("worker"):
        print(
            f"  (beside the goal: probe worker RSS {hi['worker']['rss_mb']:.1f} MB; main + worker PSS "
            f"{hi['total_pss_mb']:.1f} MB, USS {hi['total_uss_mb']:.1f} MB at ~{hi_n:,} probes)"
        )
    return goals


def source() -> dict[str, Any]:
    """Which agent code was measured: the repository's commit, and whether agent/ had changes."""
    out: dict[str, Any] = {"root": str(ROOT), "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0:
            status = subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "agent"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            out["commit"], out["dirty"] = head.stdout.strip(), bool(status.stdout.strip())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes: a smoke check in about a minute")
    parser.add_argument("--no-path", action="store_true", help="agents with path traces off")
    parser.add_argument("--malloc-arena-max", type=int, metavar="N", help="agents with MALLOC_ARENA_MAX=N")
    parser.add_argument("--tracemalloc", action="store_true", help="memory agent under tracemalloc")
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results/agent_bench*.json)")
    args = parser.parse_args(argv)
    if args.malloc_arena_max is not None and not 1 <= args.malloc_arena_max <= 64:
        parser.error("--malloc-arena-max must be 1..64")
    sizes = QUICK if args.quick else FULL
    opts = AgentOptions(not args.no_path, args.malloc_arena_max, args.tracemalloc)
    variant = "".join(
        (
            "_quick" if args.quick else "",
            "_nopath" if args.no_path else "",
            f"_arena{args.malloc_arena_max}" if args.malloc_arena_max else "",
            "_tracemalloc" if args.tracemalloc else "",
        )
    )
    output = args.output or RESULTS / f"agent_bench{variant}.json"
    res: dict[str, Any] = {}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="relaywatch-agent-bench-") as tmp:
            directory = Path(tmp)
            profile = make_lab_pki().write(directory)
            n = max(sizes.scale_targets, sizes.memory_targets)
            with relay_process(directory, n) as relays:
                print(
                    f"relays: {n} lab relays on 127.0.1.1.. port {relays.port} (pid {relays.pid}); "
                    f"agent web on {WEB_HOST}, ports {PORTS.start}-{PORTS.stop - 1}",
                    flush=True,
                )
                print("import breakdown ...", flush=True)
                res["imports"] = import_breakdown()
                print(
                    f"1. memory: {sizes.memory_targets} targets until {sizes.checkpoints[-1]:,} probes ...",
                    flush=True,
                )
                res["memory"] = goal_memory(relays, directory, profile, sizes, opts)
                k = sizes.scale_targets
                print(f"3./2. round of {k} targets, concurrency 16, then /metrics ...", flush=True)
                res["round_16"] = goal_round(relays, directory, profile, k, 16, sizes, opts, sizes.gets)
                print(f"3. round of {k} targets, concurrency 64 ...", flush=True)
                res["round_64"] = goal_round(relays, directory, profile, k, 64, sizes, opts)
                print("/metrics profile (in-process) ...", flush=True)
                res["metrics_profile"] = profile_metrics(relays, profile, k)
    except (BenchError, OSError, subprocess.SubprocessError, psutil.Error) as exc:
        print(f"agent_bench: {exc}", file=sys.stderr)
        return 1
    goals = report(res, sizes, args.quick)
    out = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "options": opts.__dict__,
        "sizes": sizes.__dict__,
        "seconds": time.monotonic() - started,
        "host": {
            "python": platform.python_version(),
            "cpus": psutil.cpu_count(),
            "machine": platform.machine(),
            "kernel": platform.release(),
        },
        "source": source(),
        "goals": goals,
        **res,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {output} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
