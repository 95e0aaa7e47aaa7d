"""What the agent costs as it runs, against blackbox_exporter 0.23 probing the same lab relays, same run.

Why: an endpoint agent is judged by what all its processes cost while it does its job, not by an
in-process probe loop. So this measures `relaywatch run` (main process, probe worker, any path process)
and blackbox_exporter's `/probe`, against 20 STARTTLS lab relays that run in a process of their own (their
CPU is counted for neither), at one probe per second per relay, path tracing off, in alternating windows
(relaywatch, blackbox, relaywatch, ...) so a change in the machine's load hits both:

  (a) CPU per probe, all agent processes, scheduled probes  vs  blackbox `/probe` driven at the same rate;
  (b) `/probe` over HTTP: CPU per probe and median wall, relaywatch vs blackbox, same rate;
  (c) memory: the sum of PSS of every agent process at steady state, 20 targets and the default config;
  (d) series per target address in /metrics;
  (e) one path trace (root): CPU and peak memory of the path process (it runs beside the agent).

The agent runs under an interpreter of its own (common.agent_python: a venv with the project's dependencies,
as packaging/deb installs it, and this tree's code), so it shares no library pages with the relays or with
this process, which would lower its PSS. Probes are counted by the relays (sessions finished), so no
scrape of the agent adds to its CPU. The
HTTP driver opens a new connection per request for both tools (the agent's server closes each one).

    python3 bench/agent_cost.py [--windows 3] [--window-s 20] [--long | --minutes M]

--long adds 100 targets at a 10 s interval for 10 minutes (total PSS at minute 1 and at the end, CPU per
probe); --minutes M runs that for M minutes instead. Writes bench/results/agent_cost.json; exit 0 when the
benchmark ran (whether or not the goals hold), 1 when something failed to run.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import (
    HOST,
    MB,
    RESULTS,
    Agent,
    BenchError,
    Blackbox,
    Relays,
    agent_process,
    agent_python,
    agent_success,
    agent_venv_info,
    blackbox_process,
    blackbox_success,
    cpu_s,
    http_get,
    loadavg,
    path_workers_under_agent_python,
    relay_process,
    result_header,
    tree,
    write_agent_config,
    write_default_config,
)
from relaywatch.lab.pki import make_lab_pki

PORTS = range(29000, 29500)  # the only ports this benchmark listens on
TARGETS = 20
SETTLE_S = 3.0  # after a reload: the reschedule burst is over
CPU_GOAL, WALL_GOAL = 1.0, 1.1
PSS_GOAL_20, PSS_GOAL_DEFAULT = 40.0, 35.0
SERIES_GOAL = 25


# ---------------------------------------------------------------- drivers


@dataclass
class Window:
    """One measured window of one tool."""

    tool: str
    kind: str  # scheduled | probe
    seconds: float
    probes: int
    cpu_s: float
    load: tuple[float, float, float]
    wall_ms: list[float] = field(default_factory=list)
    failures: int = 0

    @property
    def cpu_ms_per_probe(self) -> float:
        return self.cpu_s * 1000 / max(1, self.probes)


def drive(
    urls: Sequence[tuple[int, str]], seconds: float, ok: Callable[[int, bytes], bool]
) -> tuple[list[float], int, int]:
    """GET each (port, path) once a second, spread over the second, for `seconds`: walls (ms), successes,
    failures. One thread per URL, so a slow answer delays only its own URL."""
    walls: list[float] = []
    counts = collections.Counter[str]()
    lock = threading.Lock()
    t0 = time.monotonic()

    def one(i: int, port: int, path: str) -> None:
        k = 0
        while True:
            due = t0 + k + i / len(urls)
            if due >= t0 + seconds:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            w0 = time.perf_counter()
            try:
                status, body = http_get(HOST, port, path, timeout=15)
                good = ok(status, body)
            except OSError:
                good = False
            wall = (time.perf_counter() - w0) * 1000
            with lock:
                counts["ok" if good else "failed"] += 1
                if good:
                    walls.append(wall)
            k += 1

    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        for f in [pool.submit(one, i, port, path) for i, (port, path) in enumerate(urls)]:
            f.result()
    return walls, counts["ok"], counts["failed"]


def _agent_ok(status: int, body: bytes) -> bool:
    return status == 200 and agent_success(body)


def _bb_ok(status: int, body: bytes) -> bool:
    return status == 200 and blackbox_success(body)


class Bench:
    def __init__(self, directory: Path, profile: Path, relays: Relays, bb: Blackbox, targets: int) -> None:
        self.directory, self.profile, self.relays, self.bb = directory, profile, relays, bb
        self.targets = relays.targets(targets)
        self.hostports = [t.removeprefix("smtp://") for t in self.targets]
        self.config = directory / "agent.yml"
        self.write(scheduled=False)

    def write(self, scheduled: bool) -> None:
        """Scheduled: every target once a second. Idle: once an hour (the /probe and blackbox windows)."""
        write_agent_config(
            self.config, self.profile, self.targets, "1s" if scheduled else "1h", path_traces=False
        )

    def switch(self, agent: Agent, scheduled: bool) -> None:
        self.write(scheduled)
        agent.reload()
        time.sleep(SETTLE_S)

    def scheduled(self, agent: Agent, seconds: float) -> Window:
        self.switch(agent, scheduled=True)
        s0, c0, load = self.relays.sessions.value, agent.tree_cpu_s(), loadavg()
        time.sleep(seconds)
        probes, cpu = self.relays.sessions.value - s0, agent.tree_cpu_s() - c0
        self.switch(agent, scheduled=False)
        return Window("relaywatch", "scheduled", seconds, probes, cpu, load)

    def agent_probe(self, agent: Agent, seconds: float) -> Window:
        urls = [(agent.port, f"/probe?target=smtp://{hp}") for hp in self.hostports]
        c0, load = agent.tree_cpu_s(), loadavg()
        walls, ok, failed = drive(urls, seconds, _agent_ok)
        return Window("relaywatch", "probe", seconds, ok, agent.tree_cpu_s() - c0, load, walls, failed)

    def blackbox(self, seconds: float, kind: str) -> Window:
        urls = [(self.bb.port, self.bb.probe_path(hp)) for hp in self.hostports]
        proc = psutil.Process(self.bb.pid)
        c0, load = cpu_s(proc), loadavg()
        walls, ok, failed = drive(urls, seconds, _bb_ok)
        time.sleep(0.2)  # what the exporter does after the last response
        return Window("blackbox", kind, seconds, ok, cpu_s(proc) - c0, load, walls, failed)


# ---------------------------------------------------------------- the figures


def series_per_address(body: bytes) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in body.decode("utf-8", "replace").splitlines():
        if line and line[0] != "#" and (m := re.search(r'address="([^"]*)"', line)):
            counts[m.group(1)] += 1
    return dict(counts)


def steady_pss(agent: Agent, samples: int = 3, every: float = 1.0) -> dict[str, Any]:
    rows = []
    for i in range(samples):
        if i:
            time.sleep(every)
        rows.append(agent.pss_mb())
    best = min(rows, key=lambda r: r["total"])
    return {"total_mb_median": statistics.median(r["total"] for r in rows), "processes": best}


def default_config_memory(directory: Path, profile: Path, relays: Relays, seconds: float) -> dict[str, Any]:
    """The shipped defaults, two lab targets (common.write_default_config)."""
    cfg = write_default_config(directory / "default.yml", profile, relays.targets(2))
    with agent_process(cfg, directory / "agent-default.log", PORTS) as agent:
        time.sleep(seconds)
        return steady_pss(agent, samples=5, every=2.0)


class _PeakMemory:
    """Samples one process's PSS and USS every 20 ms, in a thread, until stopped: its peak. RSS also counts
    the libraries the agent maps already (libpython, libc, OpenSSL); PSS charges those shared pages by
    share, USS not at all, so PSS is what the trace adds to the machine beside the agent."""

    def __init__(self, pid: int, children: bool = False) -> None:
        """children: the peak of any child of `pid` instead (the path worker that `check --path` starts)."""
        self.pss_mb = self.uss_mb = 0.0
        self._stop = threading.Event()
        self._proc, self._children = psutil.Process(pid), children
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = self._proc.children() if self._children else [self._proc]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    info = proc.memory_full_info()
                except psutil.Error:
                    continue
                self.pss_mb = max(self.pss_mb, info.pss / MB)
                self.uss_mb = max(self.uss_mb, info.uss / MB)
            self._stop.wait(0.02)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(5)
        return {"peak_pss_mb": self.pss_mb, "peak_uss_mb": self.uss_mb}


def path_trace_cost(relays: Relays, profile: Path, batch: int = 10, pairs: int = 5) -> dict[str, Any]:
    """A trace as an operator runs one: `relaywatch check --path` against the same `check` without
    `--path`, in alternating runs (CPU of each process with the path worker it reaped, os.wait4; the path
    worker's peak PSS and USS sampled, _PeakMemory); and a batch of traces through one tracer process as
    the agent runs them (path.client.Tracer: CPU from this process's reaped children, peak RSS from the
    tracer's VmHWM, PSS and USS sampled)."""
    if os.geteuid() != 0:
        return {"skipped": "not root: raw sockets unavailable"}
    with path_workers_under_agent_python():  # as the agent (and `check --path`) start them
        one = _one_trace(relays, profile, pairs)
        batched = _batch_of_traces(relays, batch)
    return {"one": one, "batch": batched, "agent": _agent_traces(relays, profile, batch)}


def _agent_traces(
    relays: Relays, profile: Path, traces: int, pairs: int = 2, window_s: float = 20.0
) -> dict[str, Any]:
    """Traces as the agent runs them, end to end: `relaywatch run` with `traces` new lab addresses (one
    round at a 1 h interval), path tracing on against off, alternating; each agent's whole process tree
    over the same window, by which time its tracer processes have exited (IDLE_S after their last trace)
    and been reaped by it."""
    cpu: dict[bool, list[float]] = {True: [], False: []}
    tracers: list[int] = []
    peak = 0.0
    with tempfile.TemporaryDirectory(prefix="relaywatch-traces-") as tmp:
        for i in range(2 * pairs):
            on = i % 2 == 0
            run = Path(tmp) / str(i)
            run.mkdir()
            cfg = write_agent_config(run / "agent.yml", profile, relays.targets(traces), "1h", path_traces=on)
            with agent_process(cfg, run / "agent.log", PORTS) as agent:
                seen: set[int] = set()
                deadline = time.monotonic() + window_s
                while time.monotonic() < deadline:
                    pss = 0.0  # of the tracer processes alive at once
                    for proc in tree(agent.proc.pid):
                        with contextlib.suppress(psutil.Error):
                            if "relaywatch.path.worker" in proc.cmdline():
                                seen.add(proc.pid)
                                pss += proc.memory_full_info().pss / MB
                    peak = max(peak, pss)
                    time.sleep(0.1)
                cpu[on].append(agent.tree_cpu_s())
                if on:
                    tracers.append(len(seen))
    return {
        "traces": traces,
        "cpu_s_per_trace": (statistics.median(cpu[True]) - statistics.median(cpu[False])) / traces,
        "agent_cpu_s": {"path_on": cpu[True], "path_off": cpu[False]},
        "tracer_processes": tracers,
        "tracers_peak_pss_mb": peak,  # beside the agent: the sum over its tracers at the busiest sample
        "window_s": window_s,
    }


def _check(relays: Relays, profile: Path, path: bool) -> dict[str, Any]:
    """One `relaywatch check` of one lab relay, as an operator runs it (with the path trace or without)."""
    argv = [agent_python(), "-m", "relaywatch", "check", "--profile", str(profile), *relays.targets(1)]
    t0 = time.monotonic()
    proc = subprocess.Popen([*argv, *(["--path"] if path else [])], stdout=subprocess.PIPE)
    sampler = _PeakMemory(proc.pid, children=True)
    assert proc.stdout is not None
    out = proc.stdout.read().decode("utf-8", "replace")  # not communicate(): it would reap before wait4
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"relaywatch check exited {proc.returncode}: {out[-300:]}")
    return {
        "wall_s": time.monotonic() - t0,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # with the reaped path worker's
        "path_worker": sampler.stop(),
        "path": next((line.strip() for line in out.splitlines() if line.strip().startswith("Path:")), None),
    }


def _one_trace(relays: Relays, profile: Path, pairs: int) -> dict[str, Any]:
    """What one trace adds to `check`: medians over alternating runs with and without --path."""
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for i in range(2 * pairs):
        path = i % 2 == 0
        runs[path].append(_check(relays, profile, path))
    cpu = {path: statistics.median(r["cpu_s"] for r in rows) for path, rows in runs.items()}
    wall = {path: statistics.median(r["wall_s"] for r in rows) for path, rows in runs.items()}
    return {
        "cpu_s": cpu[True] - cpu[False],
        "wall_s": wall[True] - wall[False],
        "check_cpu_s": {"with_path": cpu[True], "without": cpu[False]},
        "peak_pss_mb": max(r["path_worker"]["peak_pss_mb"] for r in runs[True]),
        "peak_uss_mb": max(r["path_worker"]["peak_uss_mb"] for r in runs[True]),
        "pairs": pairs,
        "paths": sorted({str(r["path"]) for r in runs[True]}),
    }


def _batch_of_traces(relays: Relays, batch: int) -> dict[str, Any]:
    from relaywatch.path.client import Tracer

    tracer = Tracer()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, hwm = time.monotonic(), 0.0
    statuses = []
    batch_sampler: _PeakMemory | None = None
    for i in range(batch):
        statuses.append(str(tracer.trace(relays.hosts[i % len(relays.hosts)], relays.port, 16, 2.0).status))
        if tracer._worker is not None:
            pid = tracer._worker.proc.pid
            if batch_sampler is None:
                batch_sampler = _PeakMemory(pid)
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]) / 1024)
    wall = time.monotonic() - t0
    peaks = batch_sampler.stop() if batch_sampler else {}
    tracer.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "traces": batch,
        "processes": tracer.started,
        "cpu_s_per_trace": cpu / batch,
        "wall_s_per_trace": wall / batch,
        "peak_rss_mb": hwm,
        **peaks,
        "statuses": statuses,
    }


def long_run(
    directory: Path, profile: Path, relays: Relays, minutes: float, targets: int = 100
) -> dict[str, Any]:
    cfg = write_agent_config(
        directory / "long.yml", profile, relays.targets(targets), "10s", path_traces=False
    )
    marks: dict[str, Any] = {}
    with agent_process(cfg, directory / "agent-long.log", PORTS) as agent:
        time.sleep(5)
        s0, c0, t0 = relays.sessions.value, agent.tree_cpu_s(), time.monotonic()
        for minute in range(1, int(minutes) + 1):
            time.sleep(max(0.0, t0 + minute * 60 - time.monotonic()))
            if minute in (1, int(minutes)):
                marks[f"minute_{minute}"] = {**agent.pss_mb(), "load": loadavg()}
        probes, cpu = relays.sessions.value - s0, agent.tree_cpu_s() - c0
    first, last = marks["minute_1"]["total"], marks[f"minute_{int(minutes)}"]["total"]
    return {
        "targets": targets,
        "interval_s": 10,
        "minutes": minutes,
        "pss": marks,
        "growth_mb": last - first,
        "probes": probes,
        "cpu_ms_per_probe": cpu * 1000 / max(1, probes),
    }


# ---------------------------------------------------------------- report


def _summ(ws: list[Window]) -> dict[str, Any]:
    probes, cpu = sum(w.probes for w in ws), sum(w.cpu_s for w in ws)
    walls = [x for w in ws for x in w.wall_ms]
    return {
        "probes": probes,
        "cpu_ms_per_probe": cpu * 1000 / max(1, probes),
        "per_window_cpu_ms": [round(w.cpu_ms_per_probe, 3) for w in ws],
        "wall_ms_median": statistics.median(walls) if walls else None,
        "failures": sum(w.failures for w in ws),
        "load": [w.load for w in ws],
    }


def _mark(ok: bool) -> str:
    return "holds" if ok else "DOES NOT HOLD"


def row(label: str, bb: str, rw: str, ratio: str, goal: float, value: float) -> None:
    print(f"{label:58}{bb:>12}{rw:>12}{ratio:>8}  <= {goal:g}: {_mark(value <= goal)}")


def report(res: dict[str, Any]) -> None:
    a, b = res["scheduled"], res["probe"]
    print(f"\nmachine: {res['machine']}; load at start {res['load_start']}, at end {res['load_end']}")
    print(f"\n{'figure':58}{'blackbox':>12}{'relaywatch':>12}{'ratio':>8}  goal")
    for label, side, key, goal in (
        ("(a) CPU/probe ms, all processes (scheduled vs /probe)", a, "cpu_ms_per_probe", CPU_GOAL),
        ("(b) /probe over HTTP: CPU/probe ms", b, "cpu_ms_per_probe", CPU_GOAL),
        ("    /probe over HTTP: wall ms, median", b, "wall_ms_median", WALL_GOAL),
    ):
        bb, rw = side["blackbox"][key], side["relaywatch"][key]
        row(label, f"{bb:.2f}", f"{rw:.2f}", f"{rw / bb:.2f}", goal, rw / bb)
    m20, md = res["pss_20"]["total_mb_median"], res["pss_default"]["total_mb_median"]
    bb_pss = res["blackbox_pss_mb"]
    row("(c) PSS MB, all agent processes, 20 targets", f"{bb_pss:.1f}", f"{m20:.1f}", "", PSS_GOAL_20, m20)
    row("    PSS MB, all agent processes, default config", "", f"{md:.1f}", "", PSS_GOAL_DEFAULT, md)
    sp = res["series_per_address_max"]
    row("(d) series per target address (max)", str(res["blackbox_series"]), str(sp), "", SERIES_GOAL, sp)
    pt = res["path_trace"]
    if "one" in pt:
        one, batch = pt["one"], pt["batch"]
        print(
            f"(e) one path trace, `check --path` against `check` ({one['pairs']} pairs): CPU "
            f"{one['cpu_s']:.2f} s ({one['check_cpu_s']['with_path']:.2f} against "
            f"{one['check_cpu_s']['without']:.2f}), wall {one['wall_s']:.2f} s, the path worker's peak PSS "
            f"{one['peak_pss_mb']:.1f} MB (USS {one['peak_uss_mb']:.1f});\n"
            f"    {batch['traces']} traces in one tracer process: CPU "
            f"{batch['cpu_s_per_trace']:.3f} s a trace, peak PSS {batch.get('peak_pss_mb', 0):.1f} MB (USS "
            f"{batch.get('peak_uss_mb', 0):.1f}, RSS {batch['peak_rss_mb']:.1f}), "
            f"wall {batch['wall_s_per_trace']:.2f} s a trace;\n"
            f"    as the agent runs them ({pt['agent']['traces']} new addresses, path on against off, whole "
            f"tree): CPU {pt['agent']['cpu_s_per_trace']:.3f} s a trace, tracer processes "
            f"{pt['agent']['tracer_processes']}, their peak PSS together "
            f"{pt['agent']['tracers_peak_pss_mb']:.1f} MB"
        )
    else:
        print(f"(e) path trace: {pt}")
    for kind in ("scheduled", "probe"):
        for tool in ("relaywatch", "blackbox"):
            print(f"    {kind:9} {tool:10} per window CPU ms/probe {res[kind][tool]['per_window_cpu_ms']}")
    if "long" in res:
        lg = res["long"]
        end = lg["pss"][f"minute_{int(lg['minutes'])}"]["total"]
        print(
            f"\nlong: {lg['targets']} targets every 10 s for {lg['minutes']} min: PSS minute 1 "
            f"{lg['pss']['minute_1']['total']:.1f} MB, end {end:.1f} MB (growth {lg['growth_mb']:+.1f}); "
            f"CPU/probe {lg['cpu_ms_per_probe']:.2f} ms over {lg['probes']} probes"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=3, help="windows per tool and kind (default 3)")
    p.add_argument("--window-s", type=float, default=20.0, help="seconds per window (default 20)")
    p.add_argument("--long", action="store_true", help="also 100 targets at 10 s for 10 minutes")
    p.add_argument("--minutes", type=float, default=0.0, help="also the long run, for this many minutes")
    p.add_argument("--output", type=Path, default=RESULTS / "agent_cost.json")
    args = p.parse_args(argv)
    minutes = 10.0 if args.long else args.minutes
    if not 1 <= args.windows <= 20 or not 5 <= args.window_s <= 600 or not 0 <= minutes <= 60:
        p.error("--windows 1..20, --window-s 5..600, --minutes 0..60")
    res: dict[str, Any] = {
        **result_header(),
        "load_start": loadavg(),
        "windows": args.windows,
        "window_s": args.window_s,
        "targets": TARGETS,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="relaywatch-cost-") as tmp:
            directory = Path(tmp)
            profile = make_lab_pki().write(directory)
            with contextlib.ExitStack() as stack:
                relays = stack.enter_context(
                    relay_process(directory, max(TARGETS, 100 if minutes else 0), PORTS)
                )
                bb = stack.enter_context(blackbox_process(directory, PORTS, exclude=[relays.port]))
                res["machine"]["blackbox"] = bb.version
                res["agent_interpreter"] = agent_venv_info()
                bench = Bench(directory, profile, relays, bb, TARGETS)
                agent = stack.enter_context(agent_process(bench.config, directory / "agent.log", PORTS))
                windows: dict[str, dict[str, list[Window]]] = {
                    k: {"relaywatch": [], "blackbox": []} for k in ("scheduled", "probe")
                }
                # warm-up: both tools, unmeasured
                bench.blackbox(3, "warmup")
                bench.agent_probe(agent, 3)
                pss: list[dict[str, Any]] = []
                for _ in range(args.windows):
                    windows["scheduled"]["relaywatch"].append(bench.scheduled(agent, args.window_s))
                    pss.append(steady_pss(agent, samples=1))
                    windows["scheduled"]["blackbox"].append(bench.blackbox(args.window_s, "scheduled"))
                    windows["probe"]["relaywatch"].append(bench.agent_probe(agent, args.window_s))
                    windows["probe"]["blackbox"].append(bench.blackbox(args.window_s, "probe"))
                for kind, by in windows.items():
                    res[kind] = {tool: _summ(ws) for tool, ws in by.items()}
                res["pss_20"] = {
                    "total_mb_median": statistics.median(x["total_mb_median"] for x in pss),
                    "samples": pss,
                }
                res["blackbox_pss_mb"] = psutil.Process(bb.pid).memory_full_info().pss / MB
                _, body = agent.get("/metrics")
                per = series_per_address(body)
                res["series_per_address"] = per
                res["series_per_address_max"] = max(per.values()) if per else 0
                _, bbody = http_get(HOST, bb.port, bb.probe_path(bench.hostports[0]))
                res["blackbox_series"] = sum(1 for ln in bbody.decode().splitlines() if ln and ln[0] != "#")
                stack.pop_all().close()  # the agent and blackbox stop here; the relays too
            with relay_process(directory, max(TARGETS, 100 if minutes else 0), PORTS) as relays:
                res["pss_default"] = default_config_memory(directory, profile, relays, 20.0)
                res["path_trace"] = path_trace_cost(relays, profile)
                if minutes:
                    res["long"] = long_run(directory, profile, relays, minutes)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"agent_cost: {exc}", file=sys.stderr)
        return 1
    res["load_end"] = loadavg()
    report(res)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
