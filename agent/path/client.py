"""The agent's side: run the worker with a deadline and judge what it measured."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading

from relaywatch.codec import CodecError, decode
from relaywatch.path.judge import judge, unavailable
from relaywatch.path.model import PathResult, WorkerAnswer

_running: set[subprocess.Popen[bytes]] = set()
_lock = threading.Lock()
MAX_OUTPUT = 1 << 20  # a trace of 32 hops is a few KiB


def stop_all() -> None:
    """On shutdown: no worker outlives the agent."""
    with _lock:
        for proc in _running:
            proc.kill()


def trace_path(
    address: str, port: int, max_hops: int = 16, timeout: float = 2.0, implicit_tls: bool = False
) -> PathResult:
    """`RELAYWATCH_PATH_WORKER` may name another command for the worker (a helper holding CAP_NET_RAW)."""
    prefix = shlex.split(os.environ.get("RELAYWATCH_PATH_WORKER", "")) or [
        sys.executable,
        "-m",
        "relaywatch.path.worker",
    ]
    argv = [*prefix, address, str(port), "--max-hops", str(max_hops), "--timeout", str(timeout)]
    if implicit_tls:
        argv.append("--tls")
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return unavailable(f"cannot start the path worker: {exc.strerror}")
    with _lock:
        _running.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout * 3 + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return unavailable("the path worker did not finish in time")
    finally:
        with _lock:
            _running.discard(proc)
    try:  # the worker parsed packets from the network: its answer is decoded against the types only
        doc = decode(stdout[:MAX_OUTPUT], WorkerAnswer)
    except CodecError:
        last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return unavailable(f"path worker failed: {last[0][:200]}")
    if doc.trace is None:
        return unavailable((doc.unavailable or "no trace")[:300])
    return judge(doc.trace)
