"""The agent's side: run the worker with a deadline and judge what it measured.

One way for every caller: a Tracer keeps one worker process (`--serve`) for consecutive traces and closes it
when idle, so scapy's import (most of a trace's CPU, measured in bench/agent_cost.py) is paid once for a
batch, and its memory is held only while there is tracing to do. `relaywatch check --path` traces its
target's addresses through one Tracer too."""

from __future__ import annotations

import os
import queue
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
MAX_STDERR = 4096  # the worker's last words, for the reason it gives when it fails


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


def _judged(doc: WorkerAnswer) -> PathResult:
    if doc.trace is None:
        return unavailable((doc.unavailable or "no trace")[:300])
    return judge(doc.trace)


class Tracer:
    """One serving path worker for consecutive traces, started on the first and ended by close() (or by
    anything wrong: a late, oversized or malformed answer kills it; the next trace starts another).
    Not thread-safe: one per tracing thread."""

    def __init__(self) -> None:
        self._worker: _Worker | None = None
        self.started = 0  # worker processes started (the benchmark and the tests read it)

    def trace(
        self, address: str, port: int, max_hops: int = 16, timeout: float = 2.0, implicit_tls: bool = False
    ) -> PathResult:
        request = TraceRequest(address, port, max_hops, timeout, implicit_tls)
        worker = self._ensure()
        if isinstance(worker, str):
            return unavailable(f"cannot start the path worker: {worker}")
        answer = worker.ask(encode(request) + b"\n", time.monotonic() + _deadline(timeout))
        if isinstance(answer, str):
            self.close()
            return unavailable(answer)
        try:
            doc = decode(answer, WorkerAnswer)
        except CodecError:
            self.close()
            return unavailable("the path worker sent a malformed answer")
        if doc.trace is not None and (doc.trace.address, doc.trace.port) != (address, port):
            self.close()  # out of step (a late answer to an earlier request): none of its answers count
            return unavailable("the path worker answered for another address")
        return _judged(doc)

    def _ensure(self) -> _Worker | str:
        """The running worker, or a new one; why not, when it cannot start."""
        if self._worker is not None and self._worker.proc.poll() is None:
            return self._worker
        self.close()
        try:
            proc = subprocess.Popen(
                [*_prefix(), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,  # read beside stdout (_Worker): its last line says why it failed
            )
        except OSError as exc:
            return exc.strerror or type(exc).__name__
        with _lock:
            _running.add(proc)
        self._worker, self.started = _Worker(proc), self.started + 1
        return self._worker

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()


class _Worker:
    """A worker process and its stdout and stderr, each read by a thread of its own while it lives: portable
    (Windows cannot select() on pipes) and never blocked by a chatty stderr. stdout's chunks wait in a
    bounded queue (a worker that writes without being asked blocks, it does not fill this process); of
    stderr only the last MAX_STDERR bytes are kept, for the reason a worker gives when it fails."""

    CHUNK = 65536

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.proc, self._pipes = proc, (proc.stdout, proc.stderr)
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=MAX_OUTPUT // self.CHUNK + 2)
        self._errs = bytearray()
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=target, args=(pipe.fileno(),), daemon=True, name="path-output")
            for target, pipe in ((self._read_out, proc.stdout), (self._read_err, proc.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _read_out(self, fd: int) -> None:
        while not self._closed.is_set():
            try:
                chunk = os.read(fd, self.CHUNK)
            except OSError:
                chunk = b""
            while not self._closed.is_set():
                try:
                    self._chunks.put(chunk, timeout=0.5)
                    break
                except queue.Full:  # nobody asked: the worker waits on its pipe until somebody does
                    continue
            if not chunk:
                return

    def _read_err(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, self.CHUNK)
            except OSError:
                return
            if not chunk:
                return
            self._errs += chunk
            del self._errs[:-MAX_STDERR]

    def ask(self, request: bytes, deadline: float) -> bytes | str:
        """The answer line to `request`, or why there is none."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
        except OSError:  # it died before reading the request: its last words say why
            return self.failure(time.monotonic() + 2)
        return self.line(deadline)

    def line(self, deadline: float) -> bytes | str:
        """The next line of at most MAX_OUTPUT bytes before the deadline, or why there is none."""
        buf, end = bytearray(), -1
        while end < 0:
            left = deadline - time.monotonic()
            try:
                chunk = self._chunks.get(timeout=max(left, 0.0)) if left > 0 else None
            except queue.Empty:
                chunk = None
            if chunk is None:
                return "the path worker did not answer in time"
            if not chunk:  # stdout ended: the worker is gone or going
                return self.failure(time.monotonic() + 2)
            if (at := chunk.find(b"\n")) >= 0:
                end = len(buf) + at
            buf += chunk
            # the line so far (to its newline, or all of it): one check, wherever the chunks were cut
            if (end if end >= 0 else len(buf)) > MAX_OUTPUT:
                return "the path worker sent an oversized answer"
        return "the path worker sent more than one answer" if len(buf) > end + 1 else bytes(buf[:end])

    def failure(self, deadline: float) -> str:
        """Why the worker ended: its exit status and the last line it wrote to stderr (read to its end,
        or to the deadline)."""
        try:
            code = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = "still running"
        else:
            status = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            for thread in self._threads:  # at their pipes' end once the worker is gone
                thread.join(max(0.0, deadline - time.monotonic()))
        last = bytes(self._errs).decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        return f"path worker failed ({status}): {last[0][:200]}"

    def close(self) -> None:
        """End the worker: stdin closed (it exits), killed if it lingers. Then the readers end at their
        pipes' end (a descendant still holding one open keeps its daemon thread, never this caller,
        waiting)."""
        proc = self.proc
        with _lock:
            _running.discard(proc)
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        self._closed.set()
        for thread in self._threads:
            thread.join(1.0)
        if all(not t.is_alive() for t in self._threads):
            for pipe in self._pipes:
                pipe.close()
