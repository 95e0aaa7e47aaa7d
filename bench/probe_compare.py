"""`/probe` of two or more checkouts and blackbox_exporter, interleaved request by request.

Why: `/probe`'s cost moves by about 0.1x between runs of agent_cost.py (the machine's load, blackbox's own
spread), more than most single changes save. Here every tool is up at once and gets one sequential
`/probe` of the same relay in turn (the order rotates), so a change in load hits all of them alike; an
A/A run (the same tree twice) shows the floor. Each agent runs from its checkout's `.mypy` under the
agent's own interpreter (common.agent_python), 20 lab targets at a 1 h interval (no scheduled probes).

    python3 bench/probe_compare.py --tree /tmp/before --tree . [--requests 500]

CPU per `/probe` is each tool's whole process tree over its own turns (a request and the pause after
it), divided by its requests: the other tools' turns are left out, so a tool's idle CPU does not grow with
the number of tools. Wall is the median and the 90th percentile of its successful requests; failed ones
are counted apart. The whole run's CPU per request is reported beside it (with the others' turns: idle
CPU, and work a request caused after its pause): the two bracket the cost. Writes
bench/results/probe_compare.json; exit 0 when it ran, 1 when something failed to run or an answer was not
a successful probe. Then `/-/healthy` the same way: HTTP alone, the floor each tool's `/probe` stands on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import (
    HOST,
    RESULTS,
    BenchError,
    agent_process,
    agent_success,
    agent_venv_info,
    blackbox_process,
    blackbox_success,
    cpu_s,
    http_get,
    loadavg,
    missing_trees,
    quantile,
    relay_process,
    result_header,
    tree_env,
    write_agent_config,
)
from relaywatch.lab.pki import make_lab_pki

PORTS = range(29800, 29999)  # the only ports this benchmark listens on
TARGETS = 20
PAUSE_S = 0.01  # between requests: each tool answers one at a time


@dataclass
class Stats:
    walls: list[float] = field(default_factory=list)  # ms, successful requests only
    failed: int = 0
    cpu_s: float = 0.0  # over its own turns

    def row(self, requests: int) -> dict[str, Any]:
        return {
            "requests": requests,
            "failed": self.failed,
            "cpu_ms_per_request": self.cpu_s * 1000 / requests,
            "wall_ms_median": statistics.median(self.walls) if self.walls else None,
            "wall_ms_p90": quantile(self.walls, 0.9) if self.walls else None,
        }


@dataclass
class Tool:
    name: str
    port: int
    path: Callable[[str], str]
    ok: Callable[[bytes], bool]
    cpu: Callable[[], float]
    probe: Stats = field(default_factory=Stats)
    healthy: Stats = field(default_factory=Stats)  # HTTP alone: what /probe costs beyond it is the probe's


def _turn(tool: Tool, stats: Stats, path: str, ok: Callable[[bytes], bool]) -> None:
    """One request and the pause after it, the tool's CPU read around both (what it does after it has
    answered, such as a worker's tail, is still its own)."""
    c0, w0 = tool.cpu(), time.perf_counter()
    try:
        status, body = http_get(HOST, tool.port, path)
        good = status == 200 and ok(body)
    except OSError:
        good = False
    wall = (time.perf_counter() - w0) * 1000
    time.sleep(PAUSE_S)
    stats.cpu_s += tool.cpu() - c0
    if good:
        stats.walls.append(wall)
    else:
        stats.failed += 1


def run(trees: Sequence[Path], requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relaywatch-probe-compare-") as tmp, contextlib.ExitStack() as es:
        directory = Path(tmp)
        profile = make_lab_pki().write(directory)
        relays = es.enter_context(relay_process(directory, TARGETS, PORTS))
        config = write_agent_config(
            directory / "agent.yml", profile, relays.targets(TARGETS), "1h", path_traces=False
        )
        tools = []
        for i, tree in enumerate(trees):
            (directory / f"agent{i}").mkdir()
            env = tree_env(tree)
            agent = es.enter_context(
                agent_process(config, directory / f"agent{i}" / "agent.log", PORTS, env=env)
            )
            tools.append(
                Tool(
                    f"{i}: {tree}",
                    agent.port,
                    lambda hp: f"/probe?target=smtp://{hp}",
                    agent_success,
                    agent.tree_cpu_s,
                )
            )
        bb = es.enter_context(blackbox_process(directory, PORTS))
        exporter = psutil.Process(bb.pid)
        tools.append(Tool("blackbox", bb.port, bb.probe_path, blackbox_success, lambda: cpu_s(exporter)))
        hostports = [t.removeprefix("smtp://") for t in relays.targets(TARGETS)]
        for tool in tools:  # warm-up: every relay once (first connections, caches, thread pools)
            for hp in hostports:
                http_get(HOST, tool.port, tool.path(hp))
        load, whole = loadavg(), [t.cpu() for t in tools]
        for i in range(requests):
            hp = hostports[i % len(hostports)]
            for k in range(len(tools)):
                tool = tools[(i + k) % len(tools)]
                _turn(tool, tool.probe, tool.path(hp), tool.ok)
        wholes = [(t.cpu() - c0) * 1000 / requests for t, c0 in zip(tools, whole, strict=True)]
        for i in range(requests):
            for k in range(len(tools)):
                tool = tools[(i + k) % len(tools)]
                _turn(tool, tool.healthy, "/-/healthy", lambda body: True)
        rows = [
            {
                "tool": tool.name,
                **tool.probe.row(requests),
                # beside it, the whole run (the other tools' turns too): idle CPU and work that came after a
                # turn's pause; the two bracket the cost
                "cpu_ms_per_request_whole_run": whole_ms,
                "healthy": tool.healthy.row(requests),
            }
            for tool, whole_ms in zip(tools, wholes, strict=True)
        ]
        return {"load_start": load, "load_end": loadavg(), "rows": rows}


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "n/a"


def _ms(value: float | None) -> str:
    return f"{value:5.2f} ms" if value is not None else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, action="append", required=True, help="a checkout (once or more)")
    p.add_argument("--requests", type=int, default=500, help="per tool (1..5000)")
    p.add_argument("--output", type=Path, default=RESULTS / "probe_compare.json")
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.tree]
    missing = missing_trees(trees)
    if missing or not 1 <= args.requests <= 5000:
        p.error(f"checkouts need .mypy/relaywatch (missing: {missing}); requests 1..5000")
    try:
        res = result_header() | {"agent_interpreter": agent_venv_info()} | run(trees, args.requests)
    except BenchError as exc:
        print(f"probe_compare: {exc}", file=sys.stderr)
        return 1
    bb = res["rows"][-1]
    for row in res["rows"]:
        cpu, whole = row["cpu_ms_per_request"], row["cpu_ms_per_request_whole_run"]
        median = row["wall_ms_median"]
        print(
            f"{row['tool'][:50]:50s} CPU {cpu:5.2f} ms ({_ratio(cpu, bb['cpu_ms_per_request'])}; whole run "
            f"{whole:5.2f}, {_ratio(whole, bb['cpu_ms_per_request_whole_run'])})  wall median {_ms(median)} "
            f"({_ratio(median, bb['wall_ms_median'])}), p90 {_ms(row['wall_ms_p90'])}  failed {row['failed']}"
        )
    for row in res["rows"]:
        h, bh = row["healthy"], bb["healthy"]
        print(
            f"{row['tool'][:50]:50s} /-/healthy: CPU {h['cpu_ms_per_request']:5.2f} ms "
            f"({_ratio(h['cpu_ms_per_request'], bh['cpu_ms_per_request'])})  wall median "
            f"{_ms(h['wall_ms_median'])} ({_ratio(h['wall_ms_median'], bh['wall_ms_median'])})  "
            f"failed {h['failed']}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {args.output}; load {res['load_start']} -> {res['load_end']}")
    return 0 if not any(row["failed"] or row["healthy"]["failed"] for row in res["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
