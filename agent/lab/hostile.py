"""Hostile and broken servers: each must get a verdict within the probe's timeout, never a hang."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Sequence

from relaywatch.lab.pki import Issued, make_ca, make_leaf
from relaywatch.lab.servers import EHLO_BEFORE, LabServer, Lines, server_context

KINDS = (
    "silent",
    "garbage",
    "long_line",
    "many_lines",
    "drip",
    "rst_handshake",
    "tls_alert",
    "long_chain",
    "banner",
    "close_after_greeting",
    "cert_then_close",
    "cert_then_stall",
)


def tls12_server_flight(chain_der: Sequence[bytes]) -> bytes:
    """A hand-rolled TLS 1.2 ServerHello and Certificate, in as many records as they need: the certificates
    go on the wire exactly as given, even ones no TLS library would load or send."""
    hello = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x00"  # no session id
        + b"\xc0\x2b"  # ECDHE-ECDSA-AES128-GCM-SHA256 (the probe offers it)
        + b"\x00"  # no compression
        + _vec(b"\xff\x01\x00\x01\x00", 2)  # renegotiation_info, required by OpenSSL 3 clients
    )
    certs = _vec(b"".join(_vec(der, 3) for der in chain_der), 3)
    stream = _handshake(2, hello) + _handshake(11, certs)
    return b"".join(b"\x16\x03\x03" + _vec(stream[i : i + 16384], 2) for i in range(0, len(stream), 16384))


def _vec(data: bytes, size: int) -> bytes:
    return len(data).to_bytes(size, "big") + data


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _vec(body, 3)


def _read_client_hello(sock: socket.socket) -> bool:
    head = b""
    while len(head) < 5:
        more = sock.recv(5 - len(head))
        if not more:
            return False
        head += more
    left = int.from_bytes(head[3:5], "big")
    while left > 0:
        more = sock.recv(left)
        if not more:
            return False
        left -= len(more)
    return True


def _greet(io: Lines) -> None:
    io.send("220 hostile.relaywatch.test ESMTP")


def _after_starttls(io: Lines) -> bool:
    """Play a normal relay up to STARTTLS; True when the client asked to upgrade."""
    _greet(io)
    while (line := io.read()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            io.send(
                "250-hostile.relaywatch.test",
                *[f"250-{e}" for e in EHLO_BEFORE[:-1]],
                f"250 {EHLO_BEFORE[-1]}",
            )
        elif verb == "STARTTLS":
            io.send("220 2.0.0 Ready to start TLS")
            return True
        else:
            io.send("250 OK")
    return False


def hostile(kind: str, leaf: Issued | None = None, chain_der: Sequence[bytes] = ()) -> LabServer:
    """A LabServer that misbehaves as `kind` says (see KINDS). cert_then_*: after STARTTLS, a TLS 1.2
    ServerHello and Certificate with `chain_der`, then the connection is closed or left stalling."""
    chain_ctx = None
    if kind == "long_chain":
        ca = make_ca(_cn("Hostile CA 0"))
        cas = [ca]
        for i in range(1, 59):
            cas.append(make_ca(_cn(f"Hostile CA {i}"), cas[-1]))
        leaf = make_leaf(cas[-1], ("localhost", "127.0.0.1"))
        chain_ctx = server_context(leaf, list(reversed(cas)))

    def handle(sock: socket.socket, server: LabServer) -> None:
        io = Lines(sock)
        if kind == "silent":
            server.stopping.wait(60)
        elif kind == "garbage":
            sock.sendall(bytes(range(256)) * 16 + b"\r\n")
            server.stopping.wait(60)
        elif kind == "long_line":
            sock.sendall(b"220-" + b"A" * (1 << 20) + b"\r\n")
            server.stopping.wait(60)
        elif kind == "many_lines":
            _greet(io)
            if io.read() is not None:
                sock.sendall(b"".join(b"250-EXT%d\r\n" % i for i in range(100_000)) + b"250 END\r\n")
            server.stopping.wait(60)
        elif kind == "drip":
            for byte in b"220 slow.relaywatch.test ESMTP ready\r\n":
                if server.stopping.wait(1.0):
                    return
                sock.sendall(bytes([byte]))
        elif kind == "rst_handshake":
            if _after_starttls(io):
                sock.recv(1024)  # the ClientHello
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # RST
        elif kind == "tls_alert":
            if _after_starttls(io):
                sock.recv(1024)
                sock.sendall(bytes([21, 3, 3, 0, 2, 2, 40]))  # fatal handshake_failure alert
                time.sleep(0.2)
        elif kind == "long_chain":
            if _after_starttls(io) and chain_ctx is not None:
                tls = chain_ctx.wrap_socket(sock, server_side=True)
                tls.recv(1024)
        elif kind == "banner":
            sock.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            server.stopping.wait(60)
        elif kind == "close_after_greeting":
            _greet(io)
        elif kind in ("cert_then_close", "cert_then_stall"):
            _certificate_then(kind, io, sock, server, chain_der)
        else:
            raise ValueError(kind)

    return LabServer(handle)


def _certificate_then(
    kind: str, io: Lines, sock: socket.socket, server: LabServer, chain_der: Sequence[bytes]
) -> None:
    if _after_starttls(io) and _read_client_hello(sock):
        sock.sendall(tls12_server_flight(chain_der))
        if kind == "cert_then_stall":
            server.stopping.wait(60)


def _cn(cn: str):  # type: ignore[no-untyped-def]
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
