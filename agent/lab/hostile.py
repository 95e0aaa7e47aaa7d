"""Hostile and broken servers: each must get a verdict within the probe's timeout, never a hang."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.x509.oid import NameOID
from relaywatch.lab.pki import make_ca, make_leaf
from relaywatch.lab.servers import EHLO_BEFORE, LabServer, Lines, server_context


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


# kind -> a factory of its behaviour (built when the server starts: long_chain makes 60 certificates)
BEHAVIOURS: dict[str, Callable[[], Behaviour]] = {
    "silent": lambda: _silent,
    "garbage": lambda: _garbage,
    "long_line": lambda: _long_line,
    "many_lines": lambda: _many_lines,
    "drip": lambda: _drip,
    "rst_handshake": lambda: _rst_handshake,
    "tls_alert": lambda: _tls_alert,
    "long_chain": _long_chain,
    "banner": lambda: _banner,
    "close_after_greeting": lambda: _close_after_greeting,
}
KINDS = tuple(BEHAVIOURS)


def hostile(kind: str) -> LabServer:
    """A LabServer that misbehaves as `kind` says (see BEHAVIOURS)."""
    behave = BEHAVIOURS[kind]()
    return LabServer(lambda sock, server: behave(sock, Lines(sock), server))


def _cn(cn: str) -> x509.Name:

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
