"""The first probe worker, forked from the agent once its own imports are done, so both share them.

A worker started with exec (`python -m relaywatch.run.worker`) loads the interpreter's and the agent's
common modules again (the standard library, msgspec, yaml, relaywatch's models: about 12 MB of objects).
Forked instead, it shares those pages with the agent (copy-on-write; `gc.freeze()` first, so neither
process's collector writes to them) and loads only the TLS and X.509 stack on top.

Forking is safe only while the agent runs one thread (a lock held by another thread at fork time would be
held for ever in the child), so only the first worker is forked: the agent asks for it while it loads its
config, before any thread starts. A worker started later (after a crash or a hang) is exec'd, as before.
Measured (bench/agent_cost.py): a 120-byte fork server kept for restarts costs more than it saves, since
it keeps a private copy of every page the agent dirties after the fork.

Isolation is unchanged: the worker is a process of its own that reads and writes only typed frames on two
pipes; a crash on hostile input ends that process, and the agent starts another. Its command line is
rewritten to read `... -m relaywatch.run.worker N`, as an exec'd worker's does, so operators, the
dashboards' process exporters and tests find it by name.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
from typing import IO

_PR_SET_NAME = 15


def set_title(words: list[str], name: str) -> None:
    """Rewrite this process's command line in place (what /proc/PID/cmdline, ps and psutil show), within
    the bytes the original one had, the rest NUL-padded; `name` is the short name (comm, 15 bytes).
    Linux only; a no-op elsewhere."""
    with contextlib.suppress(OSError, ValueError, IndexError, AttributeError):
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5): fields 48 and 49)
        if not 0 < start < end:
            return
        text = b"\0".join(w.encode() for w in words)[: end - start - 1]
        ctypes.memmove(start, text.ljust(end - start, b"\0"), end - start)
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class ForkedWorker:
    """The part of subprocess.Popen the agent's worker client uses, for a worker it forked."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None
        self._lock = threading.Lock()  # the reader's wait() and the client's poll() may race

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    self.returncode = -1
                else:
                    if pid:
                        self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Blocking; the agent calls it once the worker's stdout has ended or after kill()."""
        while self.poll() is None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)  # until it exits; poll() reaps
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        return self.returncode if self.returncode is not None else -1

    def kill(self) -> None:
        with self._lock:
            if self.returncode is None:  # never signal a pid already reaped: it may be reused
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)


def can_fork() -> bool:
    """Only in a one-thread process, and where fork shares pages (Linux)."""
    return (
        sys.platform.startswith("linux")
        and threading.active_count() == 1
        and not os.environ.get("RELAYWATCH_WORKER_EXEC")
    )


def fork_worker(concurrency: int) -> ForkedWorker | None:
    """A worker forked from this process, or None (not safe or not possible here: exec one instead)."""
    if not can_fork():
        return None
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    gc.collect()
    gc.freeze()  # what is loaded now stays put: neither collector writes to the shared pages
    try:
        pid = os.fork()
    except OSError:
        for fd in (to_r, to_w, from_r, from_w):
            os.close(fd)
        return None
    if pid == 0:
        _become_worker(to_r, from_w, concurrency)  # never returns
    os.close(to_r)
    os.close(from_w)
    return ForkedWorker(pid, os.fdopen(to_w, "wb"), os.fdopen(from_r, "rb"))


def _become_worker(stdin: int, stdout: int, concurrency: int) -> None:
    code = 1
    try:
        os.dup2(stdin, 0)
        os.dup2(stdout, 1)
        os.closerange(3, 65536)  # nothing of the agent's (sockets, files, the ends of these pipes)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        set_title([sys.executable, "-m", "relaywatch.run.worker", str(concurrency)], "rw-probe-worker")
        # logging as an exec'd worker has it (warnings and worse, to stderr), not the agent's handlers
        logging.root.handlers.clear()
        logging.root.setLevel(logging.WARNING)
        from relaywatch.run.worker import serve

        code = serve(os.fdopen(0, "rb"), os.fdopen(1, "wb"), concurrency)
    except BaseException:  # a worker that cannot run: the agent sees its pipes close
        code = 1
    finally:
        os._exit(code)
