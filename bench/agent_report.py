"""agent_bench.py's tables: what was measured against each goal, and the diagnostics beside them."""

from __future__ import annotations

import math
from typing import Any

from agent_run import GROWTH_TOLERANCE_MB, METRICS_GOAL_MS, ROUND_GOAL_S, RSS_GOAL_MB, Sizes
from common import MB


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
    _memory_detail(res, hi, cps)


def _memory_detail(res: dict[str, Any], hi: dict[str, Any], cps: tuple[int, int, int]) -> None:
    """Where the memory is: largest mappings, Python allocations (tracemalloc), imports."""
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
        ("probe_total_s_median", "probe duration median, s (1)"),
        ("probe_total_s_max", "probe duration max, s (1)"),
        ("main_cpu_s", "main-process CPU, s"),
        ("worker_cpu_s", "probe worker CPU, s"),
        ("path_workers_cpu_s", "path workers' CPU (finished), s"),
        ("relay_cpu_s", "relays' CPU, s"),
    ):
        cells = ("-" if math.isnan(r[key]) else f"{r[key]:.2f}" for r in (r16, r64))
        print(f"{label:38}" + "".join(f"{c:>16}" for c in cells))
    print("(1) per-target durations are detail metrics (metrics: {detail: true}): '-' without them")
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


def report_round_only(res: dict[str, Any]) -> dict[str, bool]:
    """--round-only: goal 3 (and the /metrics timing that follows the first round)."""
    report_rounds(res)
    r16, r64 = res["round_16"], res["round_64"]
    goals = {
        "round_le_60s_concurrency_16": r16["start_to_all_results_s"] <= ROUND_GOAL_S,
        "round_le_60s_concurrency_64": r64["start_to_all_results_s"] <= ROUND_GOAL_S,
        "metrics_median_le_20ms": r16["metrics"]["ms_median"] <= METRICS_GOAL_MS,
    }
    m = r16["metrics"]
    print(
        f"/metrics with {r16['targets']:,} addresses: median {m['ms_median']:.1f} ms, "
        f"p90 {m['ms_p90']:.1f} ms"
    )
    for name, ok in goals.items():
        print(f"goal {name}: {_mark(ok)}")
    return goals
