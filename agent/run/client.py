"""The agent's side of the probe worker (worker.py): requests out, results back, and a new worker
whenever the old one dies."""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from relaywatch.analysis.profile_ref import ProfileError, ProfileRef
from relaywatch.codec import CodecError, decode, encode
from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult
from relaywatch.probe.options import ProbeOptions
from relaywatch.run.forked import ForkedWorker, fork_worker
from relaywatch.run.frames import FrameError, read_frame, write_frame
from relaywatch.run.messages import ProbeRequest, Reply, Request
from relaywatch.target import Target

log = logging.getLogger("relaywatch.worker")
Proc = subprocess.Popen[bytes] | ForkedWorker


class WorkerError(RuntimeError):
    pass


class Worker:
    """fork: the first worker is forked from this process if it still runs a single thread (forked.py),
    sharing its pages; later ones (and all, with a `command` of its own) are exec'd."""

    def __init__(self, concurrency: int, command: Sequence[str] | None = None, fork: bool = False) -> None:
        self.concurrency = concurrency
        self.fork = fork and not command
        self.command = list(command or [sys.executable, "-m", "relaywatch.run.worker", str(concurrency)])
        self.restarts = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[concurrent.futures.Future[Reply], Proc]] = {}
        self._proc: Proc | None = None
        self._closed = False
        self._timeouts = 0  # consecutive unanswered requests
        self.protocol_errors = 0  # workers replaced for sending what the protocol does not allow

    def _ensure(self) -> Proc:
        """Under self._lock."""
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self.restarts += 1
                log.warning("probe worker exited (%s); starting a new one", self._proc.returncode)
            self._proc = self._start()
            threading.Thread(target=self._read, args=(self._proc,), name="worker-reader", daemon=True).start()
        return self._proc

    def _start(self) -> Proc:
        if self.fork:
            self.fork = False  # once: a later worker is started while other threads run
            forked = fork_worker(self.concurrency)
            if forked is not None:
                return forked
        return subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _read(self, proc: Proc) -> None:
        assert proc.stdout is not None
        try:
            while (frame := read_frame(proc.stdout)) is not None:
                reply: Reply = decode(frame, Reply)  # the types are the schema: data only, no code
                with self._lock:
                    future = self._pending.pop(reply.rid, (None, None))[0]
                if future is None:
                    continue
                if reply.ok:
                    future.set_result(reply)
                elif reply.error_kind == "profile":
                    future.set_exception(ProfileError(reply.error[:1000]))
                else:
                    future.set_exception(WorkerError(reply.error[:1000]))
        except (CodecError, FrameError) as exc:  # a worker that breaks the protocol is replaced
            self.protocol_errors += 1
            log.error("probe worker sent a malformed frame (%s); replacing it", str(exc)[:200])
            proc.kill()
        except Exception as exc:  # a broken stream: this worker is done for
            log.error("probe worker stream failed: %s", exc)
            proc.kill()
        proc.wait()
        with self._lock:  # everything this worker held is lost: fail it now, not at the timeout
            lost = [rid for rid, (_, owner) in self._pending.items() if owner is proc]
            futures = [self._pending.pop(rid)[0] for rid in lost]
        for f in futures:
            f.set_exception(WorkerError("the probe worker died during the request"))

    def call(self, request: Callable[[int], Request], timeout: float) -> Reply:
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise WorkerError("the agent is stopping")
            proc = self._ensure()
            rid = next(self._ids)
            self._pending[rid] = (future, proc)
            try:
                assert proc.stdin is not None
                write_frame(proc.stdin, encode(request(rid)))
            except OSError as exc:
                self._pending.pop(rid, None)
                raise WorkerError(f"cannot reach the probe worker: {exc}") from exc
        try:
            value = future.result(timeout)
            self._timeouts = 0
            return value
        except concurrent.futures.TimeoutError as exc:
            with self._lock:
                self._pending.pop(rid, None)
                self._timeouts += 1
                if self._timeouts >= 3 and self._proc is proc:  # hung, not just busy: start afresh
                    log.error("probe worker stopped answering; killing it")
                    proc.kill()
                    self._timeouts = 0
            raise WorkerError(f"no answer from the probe worker within {timeout:g}s") from exc

    def probe(self, target: Target, profile: ProfileRef, options: ProbeOptions) -> list[ProbeResult]:
        # a margin for start-up and analysis beyond the longest a target can take
        probe = ProbeRequest(target, profile, options)
        reply = self.call(lambda rid: Request(rid, "probe", probe=probe), options.limits.target_timeout + 10)
        if reply.results is None:
            raise WorkerError("the probe worker answered a probe without results")
        return list(reply.results)

    def profile(self, spec: str) -> ProfileRef:
        reply = self.call(lambda rid: Request(rid, "profile", spec=spec), 30)
        if reply.profile is None:
            raise WorkerError("the probe worker answered without the profile")
        return reply.profile

    def host(self) -> HostReport:
        reply = self.call(lambda rid: Request(rid, "host"), 60)
        if reply.host is None:
            raise WorkerError("the probe worker answered without the host report")
        return reply.host

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
