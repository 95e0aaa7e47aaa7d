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
import contextlib
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from agent_diag import import_breakdown, profile_metrics
from agent_goals import goal_memory, goal_round
from agent_report import report, report_round_only
from agent_run import FULL, PORTS, QUICK, AgentOptions
from common import HOST, RESULTS, ROOT, BenchError, machine, relay_process
from relaywatch.lab.pki import make_lab_pki


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
    parser.add_argument(
        "--round-only", action="store_true", help="only goal 3: a round of 1,000 probes (and /metrics)"
    )
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
            "_round" if args.round_only else "",
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
            with relay_process(directory, n, PORTS) as relays:
                print(
                    f"relays: {n} lab relays on 127.0.1.1.. port {relays.port} (pid {relays.pid}); "
                    f"agent web on {HOST}, ports {PORTS.start}-{PORTS.stop - 1}",
                    flush=True,
                )
                if not args.round_only:
                    print("import breakdown ...", flush=True)
                    res["imports"] = import_breakdown()
                    print(
                        f"1. memory: {sizes.memory_targets} targets until "
                        f"{sizes.checkpoints[-1]:,} probes ...",
                        flush=True,
                    )
                    res["memory"] = goal_memory(relays, directory, profile, sizes, opts)
                k = sizes.scale_targets
                print(f"3./2. round of {k} targets, concurrency 16, then /metrics ...", flush=True)
                res["round_16"] = goal_round(relays, directory, profile, k, 16, sizes, opts, sizes.gets)
                print(f"3. round of {k} targets, concurrency 64 ...", flush=True)
                res["round_64"] = goal_round(relays, directory, profile, k, 64, sizes, opts)
                if not args.round_only:
                    print("/metrics profile (in-process) ...", flush=True)
                    res["metrics_profile"] = profile_metrics(relays, profile, k)
    except (BenchError, OSError, subprocess.SubprocessError, psutil.Error) as exc:
        print(f"agent_bench: {exc}", file=sys.stderr)
        return 1
    goals = report(res, sizes, args.quick) if not args.round_only else report_round_only(res)
    out = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "options": opts.__dict__,
        "sizes": sizes.__dict__,
        "seconds": time.monotonic() - started,
        "host": machine(),
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
