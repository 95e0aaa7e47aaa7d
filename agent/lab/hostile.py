"""Hostile and broken servers: each must get a verdict within the probe's timeout, never a hang."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID
from relaywatch.lab.pki import make_ca, make_leaf
from relaywatch.lab.servers import EHLO_BEFORE, LabServer, Lines, server_context


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


Behaviour = Callable[[socket.socket, Lines, LabServer], None]


def _silent(sock: socket.socket, io: Lines, server: LabServer) -> None:
    server.stopping.wait(60)


def _garbage(sock: socket.socket, io: Lines, server: LabServer) -> None:
    sock.sendall(bytes(range(256)) * 16 + b"\r\n")
    server.stopping.wait(60)


def _long_line(sock: socket.socket, io: Lines, server: LabServer) -> None:
    sock.sendall(b"220-" + b"A" * (1 << 20) + b"\r\n")
    server.stopping.wait(60)


def _many_lines(sock: socket.socket, io: Lines, server: LabServer) -> None:
    _greet(io)
    if io.read() is not None:
        sock.sendall(b"".join(b"250-EXT%d\r\n" % i for i in range(100_000)) + b"250 END\r\n")
    server.stopping.wait(60)


def _drip(sock: socket.socket, io: Lines, server: LabServer) -> None:
    for byte in b"220 slow.relaywatch.test ESMTP ready\r\n":
        if server.stopping.wait(1.0):
            return
        sock.sendall(bytes([byte]))


def _rst_handshake(sock: socket.socket, io: Lines, server: LabServer) -> None:
    if _after_starttls(io):
        sock.recv(1024)  # the ClientHello
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST


def _tls_alert(sock: socket.socket, io: Lines, server: LabServer) -> None:
    if _after_starttls(io):
        sock.recv(1024)
        sock.sendall(bytes([21, 3, 3, 0, 2, 2, 40]))  # fatal handshake_failure alert
        time.sleep(0.2)


def _banner(sock: socket.socket, io: Lines, server: LabServer) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    server.stopping.wait(60)


def _close_after_greeting(sock: socket.socket, io: Lines, server: LabServer) -> None:
    _greet(io)


def _long_chain() -> Behaviour:
    """A chain of 60 certificates: the caps, not the server, decide what is kept."""
    ca = make_ca(_cn("Hostile CA 0"))
    cas = [ca]
    for i in range(1, 59):
        cas.append(make_ca(_cn(f"Hostile CA {i}"), cas[-1]))
    ctx = server_context(make_leaf(cas[-1], ("localhost", "127.0.0.1")), list(reversed(cas)))

    def behave(sock: socket.socket, io: Lines, server: LabServer) -> None:
        if _after_starttls(io):
            ctx.wrap_socket(sock, server_side=True).recv(1024)

    return behave


def _certificate_then(stall: bool) -> Callable[[Sequence[bytes]], Behaviour]:
    """After STARTTLS, a TLS 1.2 ServerHello and Certificate with the given DER, then close or stall."""

    def make(chain_der: Sequence[bytes]) -> Behaviour:
        def behave(sock: socket.socket, io: Lines, server: LabServer) -> None:
            if _after_starttls(io) and _read_client_hello(sock):
                sock.sendall(tls12_server_flight(chain_der))
                if stall:
                    server.stopping.wait(60)

        return behave

    return make


# kind -> a factory of its behaviour from the certificates it may send (built when the server starts:
# long_chain makes 60 certificates)
BEHAVIOURS: dict[str, Callable[[Sequence[bytes]], Behaviour]] = {
    "silent": lambda _: _silent,
    "garbage": lambda _: _garbage,
    "long_line": lambda _: _long_line,
    "many_lines": lambda _: _many_lines,
    "drip": lambda _: _drip,
    "rst_handshake": lambda _: _rst_handshake,
    "tls_alert": lambda _: _tls_alert,
    "long_chain": lambda _: _long_chain(),
    "banner": lambda _: _banner,
    "close_after_greeting": lambda _: _close_after_greeting,
    "cert_then_close": _certificate_then(stall=False),
    "cert_then_stall": _certificate_then(stall=True),
}
KINDS = tuple(BEHAVIOURS)


def hostile(kind: str, chain_der: Sequence[bytes] = ()) -> LabServer:
    """A LabServer that misbehaves as `kind` says (see BEHAVIOURS); cert_then_* send `chain_der`."""
    behave = BEHAVIOURS[kind](chain_der)
    return LabServer(lambda sock, server: behave(sock, Lines(sock), server))


def _cn(cn: str) -> x509.Name:

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
