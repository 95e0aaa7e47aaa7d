"""Sequential STARTTLS probe cost: relaywatch vs prometheus-blackbox-exporter, same lab relay, same run.

Why: relaywatch claims to be no heavier per probe than blackbox_exporter (the tool a Prometheus shop
already runs), although it does more per probe (chain capture and analysis against a trust profile).
This measures both on loopback against one lab relay that runs in its own process, so the relay's CPU
is counted for neither client.

    python3 bench/probe_bench.py [--probes N] [--warmup W]

Prints a table and writes bench/results/probe_bench.json. Exit 0 when the benchmark ran (whether or
not the goals hold), non-zero when something failed to run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
from common import (
    HOST,
    RESULTS,
    BenchError,
    blackbox_process,
    blackbox_success,
    cpu_s,
    http_get,
    machine,
    quantile,
    relay_process,
)
from relaywatch.analysis.profile import load_profile
from relaywatch.lab.pki import make_lab_pki
from relaywatch.pipeline import check
from relaywatch.probe.options import ProbeOptions
from relaywatch.target import parse_target

PORTS = range(27000, 28000)  # the only ports this benchmark may use
OUTPUT = RESULTS / "probe_bench.json"
HTTP_TIMEOUT = 15.0  # one /probe request (the module's own timeout is 5 s)
WALL_GOAL = 1.1  # relaywatch wall per probe may be at most this times blackbox's
MAX_PROBES = 100_000


def exporter_cpu(pid: int) -> float:
    """User + system seconds of the exporter, dead threads included (psutil, clock-tick resolution)."""
    return cpu_s(psutil.Process(pid))


def exporter_runtime_ns(pid: int) -> int:
    """Nanoseconds on CPU summed over the exporter's live threads (schedstat): fine enough per probe."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


# ---------------------------------------------------------------- the two loops


@dataclass
class Side:
    name: str
    probes: int
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # per probe, where measurable per probe
    cpu_total_s: float = 0.0  # over the measured probes
    client_cpu_total_s: float | None = None  # blackbox: the bench's HTTP client, to exclude
    relay_cpu_total_s: float = 0.0  # the relay's CPU while this side ran (same work expected)

    def summary(self) -> dict[str, float | None]:
        n = self.probes
        wall = sorted(self.wall_ms)
        return {
            "wall_ms_median": statistics.median(wall),
            "wall_ms_p10": _quantile(wall, 0.10),
            "wall_ms_p90": _quantile(wall, 0.90),
            "wall_ms_mean": statistics.fmean(wall),
            "cpu_ms_mean": self.cpu_total_s * 1000 / n,
            "cpu_ms_median": statistics.median(self.cpu_ms) if self.cpu_ms else None,
            "client_cpu_ms_mean": (
                None if self.client_cpu_total_s is None else self.client_cpu_total_s * 1000 / n
            ),
            "relay_cpu_ms_mean": self.relay_cpu_total_s * 1000 / n,
        }


def _quantile(ordered: Sequence[float], q: float) -> float:
    return quantile(ordered, q)


def run_relaywatch(
    profile_path: Path, host: str, relay_port: int, relay_pid: int, n: int, warmup: int
) -> Side:
    """check() as the agent calls it: probe plus chain analysis; CPU is this process's (all threads)."""
    profile = load_profile(str(profile_path))
    target = parse_target(f"smtp://{host}:{relay_port}")
    options = ProbeOptions(first_address=True)
    side = Side("relaywatch", n)
    relay = psutil.Process(relay_pid)
    for i in range(warmup + n):
        if i == warmup:
            relay0 = sum(relay.cpu_times()[:2])
            cpu0 = time.process_time()
        w0, c0 = time.perf_counter(), time.process_time()
        results = check(target, profile, options)
        c1, w1 = time.process_time(), time.perf_counter()
        verdicts = [str(r.verdict) for r in results]
        if verdicts != ["ok"]:
            failure = results[0].record.failure if results else None
            raise BenchError(f"relaywatch probe {i}: verdicts {verdicts}, failure {failure}")
        if i >= warmup:
            side.wall_ms.append((w1 - w0) * 1000)
            side.cpu_ms.append((c1 - c0) * 1000)
    side.cpu_total_s = time.process_time() - cpu0
    side.relay_cpu_total_s = sum(relay.cpu_times()[:2]) - relay0
    return side


def run_blackbox(
    bb_port: int, bb_pid: int, host: str, relay_port: int, relay_pid: int, n: int, warmup: int
) -> Side:
    """GET /probe over one keep-alive connection; the exporter's CPU comes from /proc (psutil)."""
    path = f"/probe?module=smtp_starttls&target={host}:{relay_port}"
    status, body = http_get(HOST, bb_port, path)
    if status != 200 or not _success(body):
        _, debug = http_get(HOST, bb_port, path + "&debug=true")
        raise BenchError(f"blackbox probe failed (HTTP {status}); debug output:\n{debug.decode()[:3000]}")
    side = Side("blackbox", n)
    relay = psutil.Process(relay_pid)
    conn = http.client.HTTPConnection(HOST, bb_port, timeout=HTTP_TIMEOUT)
    try:
        for i in range(warmup + n):
            if i == warmup:
                relay0 = sum(relay.cpu_times()[:2])
                exp0 = exporter_cpu(bb_pid)
                cli0 = time.process_time()
            r0 = exporter_runtime_ns(bb_pid)
            w0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            w1 = time.perf_counter()
            r1 = exporter_runtime_ns(bb_pid)
            if resp.status != 200 or not _success(body):
                raise BenchError(f"blackbox probe {i}: HTTP {resp.status}, probe_success is not 1")
            if i >= warmup:
                side.wall_ms.append((w1 - w0) * 1000)
                side.cpu_ms.append((r1 - r0) / 1e6)
        client = time.process_time() - cli0
        time.sleep(0.1)  # let the exporter finish what it does after the last response
        side.cpu_total_s = exporter_cpu(bb_pid) - exp0
        side.client_cpu_total_s = client
        side.relay_cpu_total_s = sum(relay.cpu_times()[:2]) - relay0
    finally:
        conn.close()
    return side


def _success(body: bytes) -> bool:
    return blackbox_success(body)


# ---------------------------------------------------------------- report


def report(rw: dict[str, float | None], bb: dict[str, float | None], n: int) -> dict[str, object]:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    rows = [
        ("wall ms/probe, median", "wall_ms_median"),
        ("wall ms/probe, p10", "wall_ms_p10"),
        ("wall ms/probe, p90", "wall_ms_p90"),
        ("CPU ms/probe, mean (total/N)", "cpu_ms_mean"),
        ("CPU ms/probe, median", "cpu_ms_median"),
        ("HTTP client CPU ms/probe (excluded)", "client_cpu_ms_mean"),
        ("relay CPU ms/probe (excluded)", "relay_cpu_ms_mean"),
    ]
    print(f"\nSequential SMTP STARTTLS probes against one lab relay on loopback, N={n}")
    print(f"{'':38}{'relaywatch':>12}{'blackbox':>12}{'rw/bb':>9}")
    for label, key in rows:
        r = ratio(rw[key], bb[key])
        print(f"{label:38}{f(rw[key]):>12}{f(bb[key]):>12}{'-' if r is None else f'{r:.2f}':>9}")
    cpu_ratio = ratio(rw["cpu_ms_mean"], bb["cpu_ms_mean"])
    wall_ratio = ratio(rw["wall_ms_median"], bb["wall_ms_median"])
    assert cpu_ratio is not None and wall_ratio is not None
    goals = {
        "cpu_le_blackbox": cpu_ratio <= 1.0,
        "wall_le_1_1x_blackbox": wall_ratio <= WALL_GOAL,
    }
    print(
        "\nrelaywatch CPU: this process (probe + analysis, all threads); blackbox CPU: the exporter "
        "process\n(psutil, total over N / N; its median is from per-thread schedstat). Both exclude the "
        "relay."
    )
    print(f"goal CPU  relaywatch <= blackbox (mean):        {_mark(goals['cpu_le_blackbox'])}")
    print(f"          ratio {cpu_ratio:.2f}")
    print(f"goal wall relaywatch <= {WALL_GOAL}x blackbox (median): {_mark(goals['wall_le_1_1x_blackbox'])}")
    print(f"          ratio {wall_ratio:.2f}")
    return {"cpu_ratio_mean": cpu_ratio, "wall_ratio_median": wall_ratio, "goals": goals}


def _mark(ok: bool) -> str:
    return "HOLDS" if ok else "DOES NOT HOLD"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200, help="measured probes per client (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured probes first (default 10)")
    parser.add_argument(
        "--relay-nagle",
        action="store_true",
        help="leave Nagle on at the relay, as the stock lab relay does (adds ~40 ms idle per probe)",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"JSON results (default {OUTPUT})")
    args = parser.parse_args(argv)
    if not 1 <= args.probes <= MAX_PROBES or not 0 <= args.warmup <= 1000:
        parser.error(f"--probes must be 1..{MAX_PROBES}, --warmup 0..1000")
    try:
        with tempfile.TemporaryDirectory(prefix="relaywatch-bench-") as tmp:
            directory = Path(tmp)
            profile = make_lab_pki().write(directory)
            with contextlib.ExitStack() as stack:
                relays = stack.enter_context(relay_process(directory, 1, PORTS, nagle=args.relay_nagle))
                host, relay_port, relay_pid = relays.hosts[0], relays.port, relays.pid
                bbx = stack.enter_context(blackbox_process(directory, PORTS, exclude=[relay_port]))
                bb_port, bb_pid, bb_version = bbx.port, bbx.pid, bbx.version
                nagle = "on" if args.relay_nagle else "off"
                print(f"relay {host}:{relay_port} (pid {relay_pid}, Nagle {nagle})")
                print(f"blackbox {HOST}:{bb_port} (pid {bb_pid}, {bb_version})")
                rw = run_relaywatch(profile, host, relay_port, relay_pid, args.probes, args.warmup)
                bb = run_blackbox(bb_port, bb_pid, host, relay_port, relay_pid, args.probes, args.warmup)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"probe_bench: {exc}", file=sys.stderr)
        return 1
    rws, bbs = rw.summary(), bb.summary()
    verdict = report(rws, bbs, args.probes)
    out = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "probes": args.probes,
        "warmup": args.warmup,
        "relay_nagle": args.relay_nagle,
        "host": {**machine(), "blackbox": bb_version},
        "relaywatch": rws,
        "blackbox": bbs,
        **verdict,
        "raw": {"relaywatch": asdict(rw), "blackbox": asdict(bb)},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
