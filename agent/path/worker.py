"""The path worker: `python -m relaywatch.path.worker ADDRESS PORT` prints one JSON PathTrace (or why not).

A process of its own, so scapy's import (tens of MB) and its raw sockets never live in the agent."""

from __future__ import annotations

import argparse
import socket
import sys

from relaywatch.codec import encode
from relaywatch.path.model import WorkerAnswer


def raw_socket_reason(v6: bool) -> str | None:
    """None when raw sockets can be opened here (root or CAP_NET_RAW)."""
    try:
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    except PermissionError:
        return "raw sockets need root or CAP_NET_RAW (grant it to the agent's service, see packaging/)"
    except OSError as exc:
        return f"raw sockets unavailable: {exc.strerror}"
    s.close()
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="relaywatch-path-worker")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("--max-hops", type=int, default=16)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument(
        "--tls", action="store_true", help="implicit TLS: read the ServerHello's TTL, not a greeting's"
    )
    args = p.parse_args(argv)
    reason = raw_socket_reason(":" in args.address)
    if reason:
        sys.stdout.buffer.write(encode(WorkerAnswer(unavailable=reason)))
        return 0
    from relaywatch.path.trace import measure  # scapy: only now, only here

    try:
        trace = measure(args.address, args.port, max(1, min(args.max_hops, 32)), args.timeout, args.tls)
    except (OSError, ValueError) as exc:
        sys.stdout.buffer.write(encode(WorkerAnswer(unavailable=f"trace failed: {exc}")))
        return 0
    sys.stdout.buffer.write(encode(WorkerAnswer(trace)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
