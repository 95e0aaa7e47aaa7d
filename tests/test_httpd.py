"""The agent's HTTP server (run/httpd.py): a handler that answers Later holds no thread while it waits."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from relaywatch.run.httpd import Later, Request, Response, Server, ServerLimits

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
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


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
