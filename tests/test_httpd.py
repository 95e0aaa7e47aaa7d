"""The agent's HTTP server (run/httpd.py): a handler that answers Later holds no thread while it waits."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from relaywatch.run.client import WorkerError, _settle
from relaywatch.run.httpd import Later, Request, Response, Server, ServerLimits, _Conn

from tests.support import get

pytestmark = pytest.mark.peers
TIMEOUT = 10.0


class Pending:
    """/slow answers Later; the test decides when (and how often) it is sent."""

    def __init__(self) -> None:
        self.sends: list[Callable[[Response], None]] = []
        self.started = threading.Event()

    def handler(self, request: Request) -> Response | Later:
        if request.target == "/slow":
            return Later(self._start)
        if request.target == "/broken":
            return Later(self._fail)
        return Response(200, b"page\n")

    def _start(self, send: Callable[[Response], None]) -> None:
        self.sends.append(send)
        self.started.set()

    def _fail(self, send: Callable[[Response], None]) -> None:
        raise RuntimeError("the probe could not be sent")


@pytest.fixture
def served() -> Iterator[tuple[Server, Pending]]:
    pending = Pending()
    # one handler thread for everything that is not a scrape: a waiting /slow would starve it
    server = Server(("127.0.0.1", 0), pending.handler, lambda r: False, limits=ServerLimits(other_threads=1))
    server.start()
    try:
        yield server, pending
    finally:
        server.stop()


def _get(port: int, path: str) -> tuple[int, bytes]:
    status, body = get(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT)
    return status, body.encode()


def test_a_pending_response_leaves_the_handler_thread_free(served: tuple[Server, Pending]) -> None:
    server, pending = served
    result: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: result.append(_get(server.port, "/slow")))
    slow.start()
    assert pending.started.wait(TIMEOUT)
    assert _get(server.port, "/page") == (200, b"page\n")  # served by the only handler thread
    assert not result  # /slow still waits, and its connection stays open
    pending.sends[0](Response(200, b"probed\n"))
    pending.sends[0](Response(500, b"a second answer is ignored\n"))
    slow.join(TIMEOUT)
    assert result == [(200, b"probed\n")]


def test_a_pending_response_that_cannot_start_is_an_error_answer(served: tuple[Server, Pending]) -> None:
    server, _ = served
    status, body = _get(server.port, "/broken")
    assert status == 500 and body == b"Internal error.\n"
    assert _get(server.port, "/page") == (200, b"page\n")


def test_probes_in_flight_are_bounded_and_each_is_answered(tmp_path: Path) -> None:
    """/probe through the agent's Web: requests past MAX_PROBES in flight get 503 at once; each pending one
    is answered when its results arrive (from another thread), and a failed probe is a 500, not a hang."""
    from relaywatch.run import web as web_module
    from relaywatch.run.config import parse_config
    from relaywatch.run.scheduler import failed_result
    from relaywatch.run.state import AgentState

    config = parse_config("targets: [relay.example:587]\n", "c.yml", tmp_path)
    dones: list[Callable[..., None]] = []
    arrived = threading.Semaphore(0)

    def probe_async(target: object, profile: object, options: object, done: Callable[..., None]) -> None:
        dones.append(done)
        arrived.release()

    agent_web = web_module.Web(AgentState(config), lambda: None, ("127.0.0.1", 0), probe=probe_async)
    agent_web.start()
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def get() -> None:
        answer = _get(agent_web.port, "/probe?target=relay.example:587")
        with lock:
            results.append(answer)

    clients = [threading.Thread(target=get) for _ in range(web_module.MAX_PROBES)]
    try:
        for c in clients:
            c.start()
        for _ in clients:
            assert arrived.acquire(timeout=TIMEOUT)
        assert _get(agent_web.port, "/probe?target=relay.example:587")[0] == 503
        tc = config.targets[0]
        dones[0](None, RuntimeError("the worker died"))
        for done in dones[1:]:
            done([failed_result(tc, "lab stand-in")], None)
        for c in clients:
            c.join(TIMEOUT)
    finally:
        agent_web.stop()
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (web_module.MAX_PROBES - 1) + [500]
    assert all(b"relaywatch_probe_success" in body for status, body in results if status == 200)


def test_a_probe_whose_submit_failed_late_does_not_leave_another_probe_unanswered(tmp_path: Path) -> None:
    """The consequence in web.py: a prober that raises after registering `done` (Worker.submit on a
    non-OSError) gets its slot released twice; the BoundedSemaphore then raises inside a later, legitimate
    `done` before it sends, and that /probe connection is never answered (_HANDLING is never swept)."""
    from relaywatch.run import web as web_module
    from relaywatch.run.config import parse_config
    from relaywatch.run.scheduler import failed_result
    from relaywatch.run.state import AgentState

    config = parse_config("targets: [relay.example:587]\n", "c.yml", tmp_path)
    live: list[Callable[..., None]] = []
    ghosts: list[Callable[..., None]] = []
    arrived = threading.Semaphore(0)
    broken = threading.Event()

    def probe_async(target: object, profile: object, options: object, done: Callable[..., None]) -> None:
        if broken.is_set():  # what Worker.submit does on ValueError: `done` stays registered, then raise
            ghosts.append(done)
            raise ValueError("write to closed file")
        live.append(done)
        arrived.release()

    agent_web = web_module.Web(AgentState(config), lambda: None, ("127.0.0.1", 0), probe=probe_async)
    agent_web.start()
    result: list[tuple[int, bytes]] = []
    try:
        first = threading.Thread(
            target=lambda: result.append(_get(agent_web.port, "/probe?target=relay.example:587"))
        )
        first.start()
        assert arrived.acquire(timeout=TIMEOUT)
        broken.set()
        assert _get(agent_web.port, "/probe?target=relay.example:587")[0] == 500  # answered at once
        for done in ghosts:  # the reader's "worker died" pass, or expire()
            _settle(done, None, WorkerError("the probe worker died during the request"))
        tc = config.targets[0]
        # the legitimate probe's results arrive; in the reader thread, through _settle as always
        _settle(lambda reply, error: live[0]([failed_result(tc, "stand-in")], None), None, None)
        first.join(TIMEOUT + 1)
    finally:
        agent_web.stop()
    assert result and result[0][0] == 200, "the first /probe was never answered"


def test_a_late_send_after_stop_writes_into_whatever_reuses_the_wake_fd(tmp_path: Path) -> None:
    """A /probe answer that arrives after Server.stop() (worker.stop() runs after web.stop() in the agent)
    calls _wake() on a closed descriptor number; if that number was reused, a byte lands in that file."""
    server = Server(("127.0.0.1", 0), lambda r: Response(200, b""), lambda r: False)
    send = server._sender(_Conn(None, "127.0.0.1", 0.0))  # type: ignore[arg-type]
    wake_w = server._wake_w
    server.start()
    server.stop()
    opened = []
    try:
        for i in range(64):
            fd = os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT)
            opened.append(fd)
            if fd == wake_w:
                break
        else:
            pytest.skip("the descriptor number was not reused here")
        send(Response(200, b"late\n"))
        assert os.path.getsize(tmp_path / f"f{i}") == 0, "a late send wrote into an unrelated file"
    finally:
        for fd in opened:
            os.close(fd)
