"""The agent's HTTP server (run/httpd.py): a handler that answers Later holds no thread while it waits."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator

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
