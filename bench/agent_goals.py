"""agent_bench.py's measurements on the real agent: memory over many probes (goal 1), a round of 1,000
targets (goal 3) and /metrics with 1,000 target addresses (goal 2)."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from agent_diag import HostCpu
from agent_run import (
    AgentOptions,
    Scrape,
    Sizes,
    agent_memory,
    agent_process,
    memory,
    parse_metrics,
    scrape,
    write_config,
)
from common import MB, Agent, BenchError, Relays, quantile


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
            # per-target durations are a detail metric now: a round ends at the last probe's start, plus
            # its duration where the agent exports it
            if len(s.last) >= n:
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
            "probe_total_s_median": statistics.median(s.total.values()) if s.total else float("nan"),
            "probe_total_s_max": max(s.total.values()) if s.total else float("nan"),
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
        "ms_p90": quantile(ordered, 0.90),
        "ms_min": ordered[0],
        "ms_max": ordered[-1],
        "main_cpu_ms_per_get": cpu * 1000 / len(wall),
        "bytes": len(body),
        "samples": parse_metrics(body).samples,
    }
