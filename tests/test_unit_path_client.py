"""The agent's side of the path worker (path/client.py) against stand-in workers that misbehave: whatever
the worker does, the trace gets a verdict with the reason, in bounded time, and the worker does not linger.
The stand-ins are this interpreter running a few lines, named by RELAYWATCH_PATH_WORKER as a packager's
helper would be."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest
from relaywatch.codec import encode
from relaywatch.path import client
from relaywatch.path.client import Tracer
from relaywatch.path.model import PathResult, PathTrace, SentSyn, WorkerAnswer

ANSWER = encode(WorkerAnswer(unavailable="stand-in measured nothing")).decode()


def _trace_once(address: str, port: int) -> PathResult:
    """One trace through a Tracer of its own, closed after (as `check --path` does for one address)."""
    tracer = Tracer()
    try:
        return tracer.trace(address, port)
    finally:
        tracer.close()


def _worker(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setenv("RELAYWATCH_PATH_WORKER", shlex.join([sys.executable, "-c", code]))


def _reason(result: PathResult) -> str:
    assert result.status.value == "unavailable", result
    return str(result.reason)


def test_a_worker_that_dies_is_reported_with_its_last_words(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker(monkeypatch, "import sys; sys.stderr.write('warming up\\nno module named scapy\\n'); sys.exit(1)")
    assert _reason(_trace_once("127.0.0.1", 25)) == "path worker failed (exit 1): no module named scapy"


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("echo 'cannot open raw socket' >&2; exit 3", "path worker failed (exit 3): cannot open raw socket"),
        ("kill -9 $$", "path worker failed (killed by signal 9): no output"),
    ],
    ids=["exit", "signal"],
)
def test_a_helper_that_fails_at_once_says_why(
    monkeypatch: pytest.MonkeyPatch, script: str, reason: str
) -> None:
    # a small native helper fails before the request is even written (a broken pipe): same reason
    monkeypatch.setenv("RELAYWATCH_PATH_WORKER", shlex.join(["/bin/sh", "-c", script, "helper"]))
    for _ in range(3):
        assert _reason(_trace_once("127.0.0.1", 25)) == reason


def test_a_worker_that_stops_answering_but_lingers_is_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker(monkeypatch, "import os, sys, time; sys.stdin.readline(); os.close(1); time.sleep(30)")
    started = time.monotonic()
    assert _reason(_trace_once("127.0.0.1", 25)) == "path worker failed (still running): no output"
    assert time.monotonic() - started < 10 and not client._running


def test_an_answer_for_another_address_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for address, port in (("192.0.2.9", 25), ("127.0.0.1", 587)):  # another host, or another port
        other = encode(WorkerAnswer(PathTrace(address, port, (), (), None, None, SentSyn(1460, 64240, 7))))
        _worker(monkeypatch, f"import sys\nfor _ in sys.stdin: print({other.decode()!r}, flush=True)")
        assert _reason(_trace_once("127.0.0.1", 25)) == "the path worker answered for another address"


def test_a_chatty_worker_does_not_block_on_its_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 MiB of warnings, far more than a pipe holds, before the answer: read beside it, never a deadlock
    _worker(
        monkeypatch,
        "import sys; sys.stdin.readline(); sys.stderr.write('w' * (1 << 20) + '\\n'); sys.stderr.flush(); "
        f"print({ANSWER!r}, flush=True); sys.stdin.read()",
    )
    started = time.monotonic()
    assert _reason(_trace_once("127.0.0.1", 25)) == "stand-in measured nothing"
    assert time.monotonic() - started < 10


_PID = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); sys.stdin.readline(); "


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (_PID + "print('{\"trace\": 7}', flush=True); sys.stdin.read()", "malformed"),
        (_PID + "print('x' * (2 << 20), flush=True)", "oversized"),
        (_PID + f"print('x' * {client.MAX_OUTPUT + 1}, flush=True); sys.stdin.read()", "oversized"),
        (_PID + f"print({ANSWER!r} + '\\n' + {ANSWER!r}, flush=True)", "more than one"),
        (_PID + "time.sleep(30)", "did not answer in time"),
    ],
    ids=["malformed", "oversized", "one-byte-over", "two-answers", "late"],
)
def test_a_bad_answer_ends_the_worker_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: str, reason: str
) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("RELAYWATCH_PATH_WORKER", shlex.join([sys.executable, "-c", code, str(pid_file)]))
    monkeypatch.setattr(client, "_deadline", lambda timeout: 1.0)
    tracer = Tracer()
    started = time.monotonic()
    result = tracer.trace("127.0.0.1", 25)
    assert reason in _reason(result)
    assert time.monotonic() - started < 8  # the deadline, then at most close()'s wait and kill
    assert tracer._worker is None and not client._running  # the next trace starts another
    with pytest.raises(ProcessLookupError):  # and this one is gone, not only forgotten
        os.kill(int(pid_file.read_text()), 0)


def test_an_answer_of_exactly_the_limit_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bound is on the line, not on how the pipe cut it: MAX_OUTPUT bytes (JSON padded with spaces) pass
    padded = f"{ANSWER!r} + ' ' * {client.MAX_OUTPUT - len(ANSWER)}"
    _worker(monkeypatch, f"import sys\nfor _ in sys.stdin: print({padded}, flush=True)")
    assert _reason(_trace_once("127.0.0.1", 25)) == "stand-in measured nothing"


def test_a_worker_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYWATCH_PATH_WORKER", "/nonexistent/relaywatch-path-helper")
    assert _reason(_trace_once("127.0.0.1", 25)).startswith("cannot start the path worker: No such file")


def test_one_worker_serves_consecutive_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker(monkeypatch, f"import sys\nfor _ in sys.stdin: print({ANSWER!r}, flush=True)")
    tracer = Tracer()
    try:
        for _ in range(3):
            assert _reason(tracer.trace("127.0.0.1", 25)) == "stand-in measured nothing"
        assert tracer.started == 1
    finally:
        tracer.close()
    assert not client._running


def test_a_flood_on_stdout_is_refused_and_nothing_outlives_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 64 MiB unasked: the reader's queue holds about MAX_OUTPUT, then the worker waits on its pipe (it
    # counts what it got written, in a file)
    count = tmp_path / "written"
    _worker(
        monkeypatch,
        "import os, sys\n"
        "for i in range(1, 1025):\n"
        "    os.write(1, b'x' * 65536)\n"
        f"    open({str(count)!r}, 'w').write(str(i))",
    )
    before = {t.ident for t in threading.enumerate()}
    started = time.monotonic()
    assert _reason(_trace_once("127.0.0.1", 25)) == "the path worker sent an oversized answer"
    assert time.monotonic() - started < 10
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name == "path-output"]
    assert not client._running
    # bounded, not 64 MiB: what the answer read took (MAX_OUTPUT and a chunk), the queue (as much and two
    # chunks), a chunk in the reader's hands, a pipe's worth
    assert int(count.read_text()) * 65536 <= 2 * client.MAX_OUTPUT + 8 * 65536
