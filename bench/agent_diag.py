"""agent_bench.py's diagnostics: what each import costs in each agent process, where /metrics time goes,
and how busy the rest of the host was while the benchmark ran."""

from __future__ import annotations

import contextlib
import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import psutil
from common import HOST, ROOT, BenchError, Relays, free_port, http_get, relay_hosts

PROBE_WORKER = "relaywatch.run.worker"
DIAG_PORTS = range(28000, 29000)

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
    labels = metrics.Layout(("site",))
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
        _ = s.rendered  # rendered when first read (the scrape after a change)
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
        def collect(self) -> Iterator[Metric]:  # the agent's families, read by client_python
            return cast(Iterator[Metric], metrics.families(series, labels))

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

    server = ThreadingHTTPServer((HOST, free_port(DIAG_PORTS)), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        times = []
        for _ in range(gets):
            t0 = time.perf_counter()
            status, got = http_get(HOST, server.server_address[1], "/metrics")
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200 or len(got) != len(body):
                raise BenchError("serving a ready body failed")
        return statistics.median(times)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
