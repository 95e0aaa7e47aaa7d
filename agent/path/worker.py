"""The path worker: `python -m relaywatch.path.worker --serve` answers one JSON line per TraceRequest line
on stdin until stdin ends (path/client.py's Tracer, for the agent and `check --path`: scapy is imported
once for a batch of traces); `python -m relaywatch.path.worker ADDRESS PORT`, by hand, prints one.

A process of its own, so scapy's import (tens of MB) and its raw sockets never live in the agent."""

from __future__ import annotations

import socket
import sys

from relaywatch.codec import CodecError, decode, encode
from relaywatch.path.model import TraceRequest, WorkerAnswer

MAX_REQUEST = 4096  # a TraceRequest line is well under 200 bytes


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


def answer(request: TraceRequest) -> WorkerAnswer:
    reason = raw_socket_reason(":" in request.address)
    if reason:
        return WorkerAnswer(unavailable=reason)
    from relaywatch.path.trace import measure  # scapy: only now, only here

    hops = max(1, min(request.max_hops, 32))
    timeout = max(0.1, min(request.timeout, 30.0))
    try:
        return WorkerAnswer(measure(request.address, request.port, hops, timeout, request.implicit_tls))
    except (OSError, ValueError) as exc:
        return WorkerAnswer(unavailable=f"trace failed: {exc}")


def serve() -> int:
    """One answer line per request line; a line that is not a TraceRequest ends the worker (exit 2)."""
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if len(line) > MAX_REQUEST:
            return 2
        try:
            request = decode(line, TraceRequest)
        except CodecError:
            return 2
        out.write(encode(answer(request)) + b"\n")
        out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in == ["--serve"]:
        return serve()
    import argparse  # by hand only: the agent and `check --path` speak --serve

    p = argparse.ArgumentParser(prog="relaywatch-path-worker")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("--max-hops", type=int, default=16)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument(
        "--tls", action="store_true", help="implicit TLS: read the ServerHello's TTL, not a greeting's"
    )
    args = p.parse_args(args_in)
    request = TraceRequest(args.address, args.port, args.max_hops, args.timeout, args.tls)
    sys.stdout.buffer.write(encode(answer(request)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
