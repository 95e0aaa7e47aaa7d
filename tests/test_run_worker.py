"""The probe worker's start-up: the first one forked from the agent (sharing its pages), the next ones
exec'd; a killed worker is replaced and counted, and probes go on. Real agent, real lab relays."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import psutil
import pytest
from relaywatch.lab.demo import Lab
from relaywatch.run.client import Worker, WorkerError
from relaywatch.run.messages import Request

from tests.agent_helpers import Agent, lab_config, run_agent
from tests.support import samples, wait_for

pytestmark = pytest.mark.peers


def _worker(agent: Agent) -> psutil.Process | None:
    for c in psutil.Process(agent.proc.pid).children():
        with contextlib.suppress(psutil.Error):
            if c.status() != psutil.STATUS_ZOMBIE and "relaywatch.run.worker" in c.cmdline():
                return c
    return None


def _last_probes(agent: Agent) -> float:
    found = samples(agent.metrics(), "relaywatch_last_probe_timestamp_seconds")
    return max((s.value for s in found), default=0.0)


def _replaced(agent: Agent, old: psutil.Process) -> psutil.Process | None:
    new = _worker(agent)
    return new if new is not None and new.pid != old.pid else None


def test_forked_worker_killed_is_replaced_and_counted(lab: Lab, tmp_path: Path) -> None:
    # the agent's stderr is a pipe nobody reads here: keep its log short
    with run_agent(lab_config(tmp_path, lab, interval="1s"), "--log.level", "warn") as agent:
        first = wait_for(lambda: _worker(agent), 30)
        assert first.name() == "rw-probe-worker"  # forked by the agent, command line rewritten
        maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
        assert "_rust.abi3.so" not in maps  # the TLS and X.509 stack never loads in the agent
        wait_for(lambda: "_rust.abi3.so" in Path(f"/proc/{first.pid}/maps").read_text(), 30)
        wait_for(lambda: _last_probes(agent) > 0, 60)
        first.kill()
        second = wait_for(lambda: _replaced(agent, first), 30)
        assert second.name() != "rw-probe-worker"  # a replacement starts while threads run: exec'd
        assert "relaywatch.run.worker" in second.cmdline()
        wait_for(lambda: "relaywatch_probe_worker_restarts_total 1.0" in agent.metrics(), 30)
        after = _last_probes(agent)
        wait_for(lambda: _last_probes(agent) > after, 30)  # probes go on
        assert agent.proc.poll() is None


class _ClosedStdinProc:
    """A worker whose stdin the reader thread has just closed (ForkedWorker.wait closes it) while poll()
    still said it was running: the window between _ensure() and write_frame() in submit()."""

    def __init__(self) -> None:
        self.stdin = io.BytesIO()
        self.stdin.close()
        self.stdout = None

    def poll(self) -> None:
        return None

    def kill(self) -> None:
        pass


def test_submit_that_raises_never_calls_done_later() -> None:
    """web._start_probe (and scheduler._start) rely on it: 'not sent at all: done was not called'."""
    worker = Worker(1)
    worker._proc = _ClosedStdinProc()  # type: ignore[assignment]
    calls: list[BaseException | None] = []
    with pytest.raises(Exception) as raised:
        worker.submit(lambda rid: Request(rid, "host"), 0.0, lambda reply, error: calls.append(error))
    worker.expire()  # (or the reader's "worker died" pass)
    assert calls == [], "done ran after submit raised: the caller has already failed this request"
    assert isinstance(raised.value, WorkerError), f"documented: WorkerError; got {raised.value!r}"
