"""A small bounded HTTP/1.1 server for the agent's web port.

One selector thread does all socket I/O (accept, TLS handshakes, reading requests, writing responses), so a
slow or idle client costs a file descriptor and at most `max_header_bytes` of buffer, never a thread. Whole
requests go to a fixed set of handler threads: `/metrics` and the health checks to threads of their own,
ahead of pages, `/probe` and reloads, so a flood of those never delays a scrape. A handler that waits on
another process answers `Later` (/probe waits on the probe worker): its thread is free at once, and the
response is sent from whichever thread completes it.

Bounds: a whole-request deadline (from the first byte, TLS handshake included, to the last), a cap on open
connections derived from RLIMIT_NOFILE (at the cap the oldest connection still sending its request is
dropped for the new one, so a scraper always gets in), a cap on each request's header bytes (431), a
listen backlog of 512, a write deadline, and a bounded handler queue (503 when full).

Why not a library: waitress has no TLS (the web config needs it); cheroot (CherryPy's) gives each request
being read a thread of its fixed pool, so slow clients starve scrapes. bench/web_servers.py measured, idle
and with 300 slow clients: this server 21.7 -> 22.0 MB, 8 threads, scrape answered in 1 ms; the stdlib
ThreadingHTTPServer used before 21.9 -> 29.6 MB, 302 threads; cheroot 24.4 -> 25.4 MB, 9 threads, and
no scrape answered within 30 s."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # loaded only with a TLS context: ssl and OpenSSL cost the agent about 1 MB otherwise
    import ssl

log = logging.getLogger("relaywatch.web")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str]  # names in lower case
    client: str
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int = 512  # further capped by RLIMIT_NOFILE at start
    request_deadline: float = 10.0  # first byte (or accept) to the whole request read
    idle_timeout: float = 60.0  # a kept-alive connection waiting for its next request
    write_deadline: float = 30.0
    max_header_bytes: int = 16 << 10
    max_body_bytes: int = 64 << 10
    backlog: int = 512
    priority_threads: int = 2  # /metrics and health checks
    other_threads: int = 4  # pages, /probe, reload
    # requests waiting for a handler thread: scrapes are small and quick, so a burst of them waits (as many as
    # the backlog holds) rather than being refused; pages and /probe are the expensive class
    priority_queue_size: int = 512
    queue_size: int = 64
    fd_reserve: int = 48  # descriptors left for the rest of the agent (worker pipes, logs, outputs)


@dataclass(frozen=True, slots=True)
class Later:
    """A response another thread completes (/probe: the probe worker client's reader thread). `start` gets
    the function that sends it, called once; the handler thread is free at once, and the connection waits
    in the selector until then (the caller bounds that wait: the worker client fails a request past its
    deadline)."""

    start: Callable[[Callable[[Response], None]], None]


Handler = Callable[[Request], "Response | Later"]
Priority = Callable[[Request], bool]

_READING, _HANDLING, _WRITING = "reading", "handling", "writing"


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    client: str
    deadline: float
    state: str = _READING
    started: float = field(default_factory=time.monotonic)  # when the current request began
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: memoryview = field(default_factory=lambda: memoryview(b""))
    handshaking: bool = False
    keep_alive: bool = True
    events: int = 0


class Server:
    def __init__(
        self,
        address: tuple[str, int],
        handler: Handler,
        priority: Priority,
        tls: ssl.SSLContext | None = None,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self.handler, self.priority, self.tls, self.limits = handler, priority, tls, limits
        # a TLS socket that must read or write before it can go on (never raised without TLS)
        want_read, want_write = _want_errors(tls)
        self._want_any = (*want_read, *want_write)
        self._cannot_read: tuple[type[OSError], ...] = (BlockingIOError, *want_read)
        self._cannot_write: tuple[type[OSError], ...] = (BlockingIOError, *want_write)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(limits.backlog)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = (soft if soft != resource.RLIM_INFINITY else 1 << 20) - _open_fds() - limits.fd_reserve
        self.max_connections = max(8, min(limits.max_connections, room))
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = os.pipe()
        # a late send (a /probe answered after stop) must never write to a descriptor number reused since
        self._wake_lock = threading.Lock()
        self._wake_closed = False
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._conns: dict[socket.socket, _Conn] = {}
        self._done: queue.SimpleQueue[tuple[_Conn, bytes, bool]] = queue.SimpleQueue()
        self._queues = (
            queue.Queue[tuple[_Conn, Request] | None](limits.priority_queue_size),
            queue.Queue[tuple[_Conn, Request] | None](limits.queue_size),
        )
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name="web", daemon=True)]
        for q, n, name in (
            (self._queues[0], limits.priority_threads, "web-metrics"),
            (self._queues[1], limits.other_threads, "web-handler"),
        ):
            self._threads += [
                threading.Thread(target=self._work, args=(q,), name=f"{name}-{i}", daemon=True)
                for i in range(n)
            ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        for q in self._queues:
            for _ in range(self.limits.priority_threads + self.limits.other_threads):
                try:
                    q.put_nowait(None)
                except queue.Full:
                    break
        deadline = time.monotonic() + 2.0  # a handler thread inside a long /probe is left behind
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for c in list(self._conns.values()):
            self._close(c)
        self._sel.close()
        self._listener.close()
        with self._wake_lock:
            self._wake_closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    # --- the selector thread
    def _loop(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            for key, mask in self._sel.select(timeout=0.25):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj == self._wake_r:
                    self._drain_wake()
                else:
                    self._io(key.data, mask)
            self._finish_responses()
            now = time.monotonic()
            if now - last_sweep >= 0.25:
                last_sweep = now
                for c in [c for c in self._conns.values() if c.deadline < now and c.state != _HANDLING]:
                    self._close(c)

    def _accept(self) -> None:
        for _ in range(64):  # a burst is taken in batches, between other clients' I/O
            try:
                sock, addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._evict():
                    continue
                log.warning("web: cannot accept a connection: %s", exc.strerror)
                return
            if len(self._conns) >= self.max_connections and not self._evict():
                sock.close()  # every connection is being answered: the client retries
                continue
            self._add(sock, str(addr[0]))

    def _add(self, sock: socket.socket, client: str) -> None:
        sock.setblocking(False)
        now = time.monotonic()
        c = _Conn(sock, client, now + self.limits.request_deadline, started=now)
        if self.tls is not None:
            try:
                c.sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
            c.handshaking = True
        self._conns[c.sock] = c
        self._want(c, selectors.EVENT_READ)

    def _evict(self) -> bool:
        """Drop the connection that has waited longest for its request, for a new one."""
        waiting = [c for c in self._conns.values() if c.state == _READING]
        if not waiting:
            return False
        self._close(min(waiting, key=lambda c: c.started))
        return True

    def _want(self, c: _Conn, events: int) -> None:
        if events == c.events:
            return
        if c.events == 0:
            self._sel.register(c.sock, events, c)
        elif events == 0:
            self._sel.unregister(c.sock)
        else:
            self._sel.modify(c.sock, events, c)
        c.events = events

    def _close(self, c: _Conn) -> None:
        if self._conns.pop(c.sock, None) is None:
            return
        if c.events:
            self._sel.unregister(c.sock)
            c.events = 0
        c.inbuf, c.outbuf = bytearray(), memoryview(b"")
        with contextlib.suppress(OSError):
            c.sock.close()

    def _io(self, c: _Conn, mask: int) -> None:
        try:
            if c.handshaking:
                self._handshake(c)
            elif c.state == _WRITING:
                self._write(c)
            elif c.state == _READING:
                self._read(c)
        except self._want_any:
            pass
        except (OSError, ValueError, UnicodeError):  # reset, TLS alert, garbage: this client is done
            self._close(c)

    def _handshake(self, c: _Conn) -> None:
        import ssl  # loaded: this server has a TLS context

        assert isinstance(c.sock, ssl.SSLSocket)
        try:
            c.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(c, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._want(c, selectors.EVENT_WRITE)
            return
        c.handshaking = False
        self._want(c, selectors.EVENT_READ)
        self._read(c)  # the request may have come with the client's Finished

    def _read(self, c: _Conn) -> None:
        while True:
            try:
                data = c.sock.recv(65536)
            except self._cannot_read:
                break
            if not data:
                self._close(c)
                return
            if not c.inbuf and c.deadline - time.monotonic() > self.limits.request_deadline:
                # the first byte of a request on a kept-alive connection: its deadline starts now
                c.started, c.deadline = time.monotonic(), time.monotonic() + self.limits.request_deadline
            c.inbuf += data
            if len(c.inbuf) > self.limits.max_header_bytes + self.limits.max_body_bytes:
                break
            if not (self.tls is not None and cast("ssl.SSLSocket", c.sock).pending()):
                break
        self._parse(c)

    def _parse(self, c: _Conn) -> None:
        end = c.inbuf.find(b"\r\n\r\n")
        if end < 0:
            if len(c.inbuf) > self.limits.max_header_bytes:
                self._reply_now(c, Response(431, b"Request header fields too large.\n"))
            return
        if end > self.limits.max_header_bytes:
            self._reply_now(c, Response(431, b"Request header fields too large.\n"))
            return
        try:
            method, target, version, headers = _parse_head(bytes(c.inbuf[:end]))
        except ValueError as exc:
            self._reply_now(c, Response(400, f"Bad request: {exc}.\n".encode()))
            return
        if "transfer-encoding" in headers:
            self._reply_now(c, Response(411, b"A request body needs Content-Length.\n"))
            return
        length = headers.get("content-length", "0").strip()
        if not length.isascii() or not length.isdigit() or int(length) > self.limits.max_body_bytes:
            self._reply_now(c, Response(413, b"Request body too large or its length invalid.\n"))
            return
        total = end + 4 + int(length)
        if len(c.inbuf) < total:
            return  # the body is still coming
        body = bytes(c.inbuf[end + 4 : total])
        del c.inbuf[:total]
        conn = headers.get("connection", "").lower()
        c.keep_alive = conn != "close" and (version == "HTTP/1.1" or conn == "keep-alive")
        request = Request(method, target, headers, c.client, body)
        c.state = _HANDLING
        self._want(c, 0)
        try:
            self._queues[0 if self.priority(request) else 1].put_nowait((c, request))
        except queue.Full:
            self._respond(c, Response(503, b"Too many requests at once; try again.\n"), False)

    def _reply_now(self, c: _Conn, response: Response) -> None:
        c.state = _HANDLING
        self._respond(c, response, False)

    def _respond(self, c: _Conn, response: Response, keep_alive: bool) -> None:
        """In the selector thread: start writing a response."""
        c.keep_alive = keep_alive and c.keep_alive
        c.outbuf = memoryview(_encode(response, c.keep_alive))
        c.state = _WRITING
        c.deadline = time.monotonic() + self.limits.write_deadline
        self._write(c)

    def _write(self, c: _Conn) -> None:
        while c.outbuf:
            try:
                sent = c.sock.send(c.outbuf[: 1 << 18])
            except self._cannot_write:
                self._want(c, selectors.EVENT_WRITE)
                return
            c.outbuf = c.outbuf[sent:]
        if not c.keep_alive:
            self._close(c)
            return
        now = time.monotonic()
        c.state, c.started, c.deadline = _READING, now, now + self.limits.idle_timeout
        self._want(c, selectors.EVENT_READ)
        if c.inbuf:  # a pipelined request
            self._parse(c)

    def _finish_responses(self) -> None:
        while True:
            try:
                c, payload, keep = self._done.get_nowait()
            except queue.Empty:
                return
            if c.sock in self._conns:
                c.keep_alive = keep and c.keep_alive
                c.outbuf, c.state = memoryview(payload), _WRITING
                c.deadline = time.monotonic() + self.limits.write_deadline
                try:
                    self._write(c)
                except OSError:
                    self._close(c)

    def _wake(self) -> None:
        with self._wake_lock, contextlib.suppress(OSError):  # the pipe is full: the loop is awake anyway
            if not self._wake_closed:
                os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    # --- handler threads
    def _work(self, q: queue.Queue[tuple[_Conn, Request] | None]) -> None:
        while (item := q.get()) is not None:
            c, request = item
            send = self._sender(c)
            try:
                response = self.handler(request)
                if isinstance(response, Later):
                    response.start(send)
                    continue
            except Exception:  # a bug in a handler: an answer, not a hung client
                log.exception("web: %s %s failed", request.method, request.target[:200])
                response = Response(500, b"Internal error.\n")
            send(response)

    def _sender(self, c: _Conn) -> Callable[[Response], None]:
        """Hands a response to the selector thread; from any thread, and only the first call counts."""
        once = threading.Lock()

        def send(response: Response) -> None:
            if once.acquire(blocking=False):
                self._done.put((c, _encode(response, c.keep_alive), True))
                self._wake()

        return send


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise ValueError("not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("malformed header line")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def _encode(response: Response, keep_alive: bool) -> bytes:
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = ""
    head = [
        f"HTTP/1.1 {response.status} {phrase}",
        "Server: relaywatch",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        *(f"{k}: {v}" for k, v in response.headers),
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


def _want_errors(tls: ssl.SSLContext | None) -> tuple[tuple[type[OSError], ...], tuple[type[OSError], ...]]:
    """ssl's want-read and want-write errors for a TLS server; nothing to catch for a plain one."""
    if tls is None:
        return (), ()
    import ssl

    return (ssl.SSLWantReadError,), (ssl.SSLWantWriteError,)


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16
