"""The agent's side of the probe worker (worker.py): requests out, results back, and a new worker
whenever the old one dies."""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import subprocess
import sys
import threading
import time
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
# called once per request, in the reader thread (or the thread that noticed a timeout): a reply, or why none
Done = Callable[["Reply | None", "BaseException | None"], None]


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
        self._pending: dict[int, tuple[Done, Proc, float]] = {}  # rid -> (done, worker, deadline)
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
                    done = self._pending.pop(reply.rid, (None, None, 0.0))[0]
                    self._timeouts = 0
                if done is None:
                    continue
                if reply.ok:
                    _settle(done, reply, None)
                elif reply.error_kind == "profile":
                    _settle(done, None, ProfileError(reply.error[:1000]))
                else:
                    _settle(done, None, WorkerError(reply.error[:1000]))
        except (CodecError, FrameError) as exc:  # a worker that breaks the protocol is replaced
            self.protocol_errors += 1
            log.error("probe worker sent a malformed frame (%s); replacing it", str(exc)[:200])
            proc.kill()
        except Exception as exc:  # a broken stream: this worker is done for
            log.error("probe worker stream failed: %s", exc)
            proc.kill()
        proc.wait()
        with self._lock:  # everything this worker held is lost: fail it now, not at the timeout
            lost = [rid for rid, (_, owner, _) in self._pending.items() if owner is proc]
            dones = [self._pending.pop(rid)[0] for rid in lost]
        for done in dones:
            _settle(done, None, WorkerError("the probe worker died during the request"))

    def submit(self, request: Callable[[int], Request], timeout: float, done: Done) -> int:
        """Send a request and return at once; `done` runs when the reply comes (in the reader thread), when
        the worker dies, or at expire() after `timeout`. Raises WorkerError if it cannot be sent."""
        with self._lock:
            if self._closed:
                raise WorkerError("the agent is stopping")
            proc = self._ensure()
            rid = next(self._ids)
            self._pending[rid] = (done, proc, time.monotonic() + timeout)
            try:
                assert proc.stdin is not None
                write_frame(proc.stdin, encode(request(rid)))
            except Exception as exc:  # OSError, or ValueError on a stdin the reader has just closed
                self._pending.pop(rid, None)
                raise WorkerError(f"cannot reach the probe worker: {exc}") from exc
        return rid

    def expire(self) -> None:
        """Fail the requests past their deadline (the scheduler calls this at least once a second)."""
        now = time.monotonic()
        with self._lock:
            late = [rid for rid, (_, _, deadline) in self._pending.items() if deadline <= now]
            expired = [self._pending.pop(rid) for rid in late]
            for _, proc, _ in expired:
                self._timed_out(proc)
        for done, _, _ in expired:
            _settle(done, None, WorkerError("no answer from the probe worker in time"))

    def _timed_out(self, proc: Proc) -> None:
        """Under self._lock: one more unanswered request; a worker that stops answering is hung, not busy."""
        self._timeouts += 1
        if self._timeouts >= 3 and self._proc is proc:
            log.error("probe worker stopped answering; killing it")
            proc.kill()
            self._timeouts = 0

    def call(self, request: Callable[[int], Request], timeout: float) -> Reply:
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()

        def done(reply: Reply | None, error: BaseException | None) -> None:
            if reply is not None:
                future.set_result(reply)
            else:
                future.set_exception(error or WorkerError("no reply"))

        rid = self.submit(request, timeout + 60, done)  # expire() is a backstop; the wait below decides
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            with self._lock:
                entry = self._pending.pop(rid, None)
                if entry is not None:
                    self._timed_out(entry[1])
            raise WorkerError(f"no answer from the probe worker within {timeout:g}s") from exc

    def probe(self, target: Target, profile: ProfileRef, options: ProbeOptions) -> list[ProbeResult]:
        # a margin for start-up and analysis beyond the longest a target can take
        probe = ProbeRequest(target, profile, options)
        reply = self.call(lambda rid: Request(rid, "probe", probe=probe), options.limits.target_timeout + 10)
        return _results(reply)

    def probe_async(
        self,
        target: Target,
        profile: ProfileRef,
        options: ProbeOptions,
        done: Callable[[list[ProbeResult] | None, BaseException | None], None],
    ) -> None:
        """The scheduler's probe: no thread of this process waits for it; `done` gets the results."""
        probe = ProbeRequest(target, profile, options)

        def settle(reply: Reply | None, error: BaseException | None) -> None:
            if reply is None:
                done(None, error)
                return
            try:
                results = _results(reply)
            except WorkerError as exc:
                done(None, exc)
                return
            done(results, None)

        timeout = options.limits.target_timeout + 10
        self.submit(lambda rid: Request(rid, "probe", probe=probe), timeout, settle)

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


def _results(reply: Reply) -> list[ProbeResult]:
    if reply.results is None:
        raise WorkerError("the probe worker answered a probe without results")
    return list(reply.results)


def _settle(done: Done, reply: Reply | None, error: BaseException | None) -> None:
    """Run a request's callback; a failing callback is logged, never the end of the reader thread."""
    try:
        done(reply, error)
    except Exception:
        log.exception("handling a probe worker reply failed")
