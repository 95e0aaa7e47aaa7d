"""Main-process cost of the web port's server: relaywatch's httpd.py against the standard library's
ThreadingHTTPServer (what the agent used before) and cheroot (CherryPy's server, if importable: e.g.
`pip install --target /tmp/cheroot cheroot` and PYTHONPATH=/tmp/cheroot). For each: RSS and threads idle,
and with 300 slow clients holding a half-sent request. Loopback only; prints a table.

    PYTHONPATH=$PWD/.mypy:/tmp/cheroot python3 bench/web_servers.py"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import sys
import time

BODY = b"x" * 50_000


def _serve(kind: str, port_out: multiprocessing.connection.Connection) -> None:
    if kind == "httpd":
        from relaywatch.run.httpd import Response, Server

        server = Server(("127.0.0.1", 0), lambda r: Response(200, BODY), lambda r: True)
        server.start()
        port_out.send(server.port)
    elif kind == "stdlib":
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *a: object) -> None:
                pass

        class S(ThreadingHTTPServer):
            daemon_threads = True

        srv = S(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        port_out.send(srv.server_address[1])
    else:
        import threading

        from cheroot import wsgi

        def app(environ, start_response):  # type: ignore[no-untyped-def]
            start_response("200 OK", [("Content-Length", str(len(BODY)))])
            return [BODY]

        srv = wsgi.Server(("127.0.0.1", 0), app, numthreads=6, request_queue_size=512, timeout=10)
        srv.prepare()
        threading.Thread(target=srv.serve, daemon=True).start()
        port_out.send(srv.bind_addr[1])
    time.sleep(3600)


def measure(kind: str) -> tuple[str, float, int, float, int, float]:
    import psutil

    here, there = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(kind, there), daemon=True)
    proc.start()
    port = here.recv()
    p = psutil.Process(proc.pid)
    time.sleep(1)
    idle_rss, idle_threads = p.memory_info().rss / 2**20, p.num_threads()
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port))
        s.send(b"GET / HTTP/1.1\r\nX-Slow: ")
        socks.append(s)
    time.sleep(2)
    slow_rss, slow_threads = p.memory_info().rss / 2**20, p.num_threads()
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = s.recv(100)
    except OSError:  # no answer within 30 s: every thread is held by a slow client
        got = b""
    scrape = time.monotonic() - start if got[:12].endswith(b" 200") else float("nan")
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()
    proc.kill()
    return kind, idle_rss, idle_threads, slow_rss, slow_threads, scrape


def main() -> int:
    kinds = ["httpd", "stdlib"]
    with contextlib.suppress(ImportError):
        import cheroot  # noqa: F401

        kinds.append("cheroot")
    print(
        f"{'server':8} {'idle MB':>8} {'threads':>8} {'300 slow MB':>12} {'threads':>8} {'scrape s':>9}",
        "(nan: no answer in 30 s)",
    )
    for kind in kinds:
        k, a, b, c, d, e = measure(kind)
        print(f"{k:8} {a:8.1f} {b:8d} {c:12.1f} {d:8d} {e:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
