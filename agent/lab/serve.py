"""Run one lab component as a process of its own (for tests that place it in a network namespace, or
give it a product's process name): `python -m relaywatch.lab.serve relay|resigner DIR LISTEN [UPSTREAM]`."""

from __future__ import annotations

import argparse
import ctypes
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from relaywatch.lab.pki import Issued
from relaywatch.lab.proxies import Resigner
from relaywatch.lab.servers import LabServer, Mail, server_context


def set_process_name(name: str) -> None:
    """What `ps`, psutil and the host inspection see (Linux: /proc/PID/comm, 15 characters)."""
    libc = ctypes.CDLL(None)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m relaywatch.lab.serve")
    p.add_argument("role", choices=("relay", "resigner"))
    p.add_argument("pki", type=Path, help="directory written by LabPKI.write()")
    p.add_argument("listen", help="host:port ([::]:25 listens on IPv4 and IPv6)")
    p.add_argument("upstream", nargs="?", help="host:port, for resigner")
    p.add_argument("--ca", default="interception_ca", help="which lab CA re-signs (resigner)")
    p.add_argument("--process-name", help="take this process name (e.g. AvastSvc)")
    p.add_argument("--implicit-tls", action="store_true", help="relay: SMTPS (TLS from the first byte)")
    args = p.parse_args(argv)
    if args.process_name:
        set_process_name(args.process_name)
    handler: Callable[[socket.socket, LabServer], None]
    if args.role == "relay":
        ctx = server_context(Issued.load(args.pki, "relay"), [Issued.load(args.pki, "issuing")])
        handler = Mail("smtp", ctx, implicit_tls=args.implicit_tls)
    else:
        if not args.upstream:
            p.error("resigner needs UPSTREAM")
        handler = Resigner(_split(args.upstream), Issued.load(args.pki, args.ca))
    host, port = _split(args.listen)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LabServer(handler, host, port):
        print(f"listening on {args.listen}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
