"""The agent's side: run the worker with a deadline and judge what it measured.

Two ways: trace_path() runs one worker process per trace (`relaywatch check --path`); a Tracer keeps one
worker process (`--serve`) for a batch of traces and closes it when idle, so scapy's import (most of a
trace's CPU, measured in bench/agent_cost.py) is paid once a batch and its memory is held only while
there is tracing to do."""

from __future__ import annotations

import os
import selectors
import shlex
import subprocess
import sys
import threading
import time

from relaywatch.codec import CodecError, decode, encode
from relaywatch.path.judge import judge, unavailable
from relaywatch.path.model import PathResult, TraceRequest, WorkerAnswer

_running: set[subprocess.Popen[bytes]] = set()
_lock = threading.Lock()
MAX_OUTPUT = 1 << 20  # a trace of 32 hops is a few KiB


def stop_all() -> None:
    """On shutdown: no worker outlives the agent."""
    with _lock:
        for proc in _running:
            proc.kill()


def _prefix() -> list[str]:
    """`RELAYWATCH_PATH_WORKER` may name another command for the worker (a helper holding CAP_NET_RAW)."""
    return shlex.split(os.environ.get("RELAYWATCH_PATH_WORKER", "")) or [
        sys.executable,
        "-m",
        "relaywatch.path.worker",
    ]


def _deadline(timeout: float) -> float:
    """The longest a trace may take: two sr() rounds, the TTL capture, the process start (scapy)."""
    return timeout * 3 + 15


def trace_path(
    address: str, port: int, max_hops: int = 16, timeout: float = 2.0, implicit_tls: bool = False
) -> PathResult:
    """One trace in a worker process of its own."""
    argv = [*_prefix(), address, str(port), "--max-hops", str(max_hops), "--timeout", str(timeout)]
    if implicit_tls:
        argv.append("--tls")
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return unavailable(f"cannot start the path worker: {exc.strerror}")
    with _lock:
        _running.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=_deadline(timeout))
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
    return _judged(doc)


def _judged(doc: WorkerAnswer) -> PathResult:
    if doc.trace is None:
        return unavailable((doc.unavailable or "no trace")[:300])
    return judge(doc.trace)


class Tracer:
    """One serving path worker for consecutive traces, started on the first and ended by close() (or by
    anything wrong: a late, oversized or malformed answer kills it; the next trace starts another).
    Not thread-safe: one per tracing thread."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0  # worker processes started (the benchmark and the tests read it)

    def trace(
        self, address: str, port: int, max_hops: int = 16, timeout: float = 2.0, implicit_tls: bool = False
    ) -> PathResult:
        request = TraceRequest(address, port, max_hops, timeout, implicit_tls)
        proc = self._ensure()
        if proc is None:
            return unavailable("cannot start the path worker")
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(encode(request) + b"\n")
            proc.stdin.flush()
        except OSError:
            self.close()
            return unavailable("the path worker went away")
        line = _read_line(proc, time.monotonic() + _deadline(timeout))
        if line is None:
            self.close()
            return unavailable("the path worker did not answer in time")
        try:
            doc = decode(line, WorkerAnswer)
        except CodecError:
            self.close()
            return unavailable("the path worker sent a malformed answer")
        return _judged(doc)

    def _ensure(self) -> subprocess.Popen[bytes] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self.close()
        try:
            proc = subprocess.Popen(
                [*_prefix(), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return None
        with _lock:
            _running.add(proc)
        self._proc, self.started = proc, self.started + 1
        return proc

    def close(self) -> None:
        """End the worker: stdin closed (it exits), killed if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with _lock:
            _running.discard(proc)
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes | None:
    """One line of at most MAX_OUTPUT bytes before the deadline, else None."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or len(buf) > MAX_OUTPUT or not sel.select(left):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    return None if rest else line
