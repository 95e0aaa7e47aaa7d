"""The agent under test in agent_bench.py: how it is configured and started (as shipped, or with one change
to isolate a cause), and what the benchmark reads back (its /metrics, its processes' memory)."""

from __future__ import annotations

import collections
import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import psutil
from common import MB, Agent, BenchError

PORTS = range(28000, 29000)  # the only ports agent_bench listens on
RSS_GOAL_MB = 40.0
GROWTH_TOLERANCE_MB = 1.0  # "no growth": allocator noise below this is not growth
METRICS_GOAL_MS = 20.0
ROUND_GOAL_S = 60.0
PROBE_WORKER = common.PROBE_WORKER
PATH_WORKER = "relaywatch.path.worker"  # its short-lived children doing path traces


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


@dataclass(frozen=True)
class AgentOptions:
    """How the agents under test are started: as shipped, or with one change to isolate a cause."""

    path: bool = True  # the agent's path traces (on by default in the agent)
    arena_max: int | None = None  # MALLOC_ARENA_MAX for the agent (its children inherit it)
    tracemalloc: bool = False  # memory run only: main process under tracemalloc, read at checkpoints


def write_config(
    path: Path, profile: Path, targets: Sequence[str], interval: str, concurrency: int, opts: AgentOptions
) -> Path:
    return common.write_agent_config(path, profile, targets, interval, concurrency, opts.path)


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
    """`relaywatch run` on 127.0.0.1 (common.agent_process), optionally under tracemalloc."""
    env = {"MALLOC_ARENA_MAX": str(opts.arena_max)} if opts.arena_max is not None else None
    prefix = [common.agent_python(), "-c", _TRACEMALLOC_AGENT, str(trace_dir)] if trace_dir else None
    with common.agent_process(config, log, PORTS, env, prefix) as agent:
        yield agent


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
