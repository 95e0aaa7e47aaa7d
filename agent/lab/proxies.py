"""Lab middleboxes in front of a lab relay: a re-signing interceptor (what an antivirus mail shield or
an inspecting firewall does) and a Cisco-ASA-style STARTTLS stripper. Both are real TCP proxies."""

from __future__ import annotations

import select
import socket
import ssl
import threading

from cryptography import x509
from relaywatch.lab.pki import Issued, forge
from relaywatch.lab.servers import LabServer, Lines, server_context
from relaywatch.protocols import protocol_named


def _pump(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes. One thread, since an SSL object is not safe to read and
    write from two threads at once; non-blocking, since a TLS socket that is readable at the TCP level may
    hold only a session ticket, and a blocking read would then stall the other direction."""
    peer = {a: b, b: a}
    for s in (a, b):
        s.setblocking(False)
    try:
        while True:
            ready: list[socket.socket] = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([a, b], [], [], 30)
            if not ready:
                return
            for s in ready:
                try:
                    data = s.recv(16384)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                if not data:
                    return
                _send_all(peer[s], data)
    except (OSError, ssl.SSLError):
        return


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([], [sock], [], 10)


def _relay_until_upgrade(client: socket.socket, up: socket.socket, protocol: str) -> bool:
    """Relay the plaintext dialogue; after the client's upgrade command, pass the one-line reply on and
    return True: both sides then expect a TLS handshake."""
    pending = b""
    while True:
        ready, _, _ = select.select([client, up], [], [], 30)
        if not ready:
            return False
        if up in ready:
            data = up.recv(16384)
            if not data:
                return False
            client.sendall(data)
        if client in ready:
            data = client.recv(16384)
            if not data:
                return False
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                up.sendall(line + b"\n")
                if _is_upgrade(line.decode("utf-8", "replace"), protocol):
                    reply = b""
                    while not reply.endswith(b"\n") and len(reply) < 4096:
                        byte = up.recv(1)
                        if not byte:
                            return False
                        reply += byte
                    client.sendall(reply)
                    return True


def _is_upgrade(line: str, protocol: str) -> bool:
    spec = protocol_named(protocol)
    words = line.upper().split()[1:] if spec.tagged else line.upper().split()
    return words == [spec.upgrade_command]


class Resigner:
    """Terminates TLS towards the client with a forged copy of the relay's leaf, signed by `ca`.

    starttls=True relays the plaintext dialogue and takes over at STARTTLS (like sslsplit autossl);
    False intercepts implicit TLS from the first byte."""

    def __init__(
        self,
        upstream: tuple[str, int],
        ca: Issued,
        protocol: str = "smtp",
        starttls: bool = True,
        send_ca: bool = True,
    ) -> None:
        self.upstream, self.ca, self.protocol, self.starttls, self.send_ca = (
            upstream,
            ca,
            protocol,
            starttls,
            send_ca,
        )
        self._forged: dict[bytes, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def __call__(self, client: socket.socket, server: LabServer) -> None:
        up = socket.create_connection(self.upstream, timeout=10)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.starttls and not _relay_until_upgrade(client, up, self.protocol):
                return
            tls_up = _client_ctx().wrap_socket(up, server_hostname="localhost")
            der = tls_up.getpeercert(binary_form=True)
            if der is None:
                return
            tls_client = self._context(der).wrap_socket(client, server_side=True)
            _pump(tls_client, tls_up)
        finally:
            up.close()

    def _context(self, der: bytes) -> ssl.SSLContext:
        with self._lock:
            ctx = self._forged.get(der)
            if ctx is None:
                forged = forge(x509.load_der_x509_certificate(der), self.ca)
                ctx = server_context(forged, [self.ca] if self.send_ca else [])
                self._forged[der] = ctx
            return ctx


class Stripper:
    """Cisco ASA/PIX ESMTP inspection: STARTTLS in EHLO becomes `XXXXXXXA` (mode masked) or disappears
    (mode drop), and the STARTTLS command is answered `500 5.5.1` without reaching the relay."""

    def __init__(self, upstream: tuple[str, int], mode: str = "masked") -> None:
        self.upstream, self.mode = upstream, mode

    def __call__(self, client: socket.socket, server: LabServer) -> None:
        up = socket.create_connection(self.upstream, timeout=10)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            cio, uio = Lines(client), Lines(up)
            while True:
                line = uio.read()
                if line is None:
                    return
                if line[4:].upper() == "STARTTLS":
                    if self.mode == "drop":
                        continue
                    line = line[:4] + "XXXXXXXA"
                cio.send(line)
                if len(line) > 3 and line[3] == "-":
                    continue
                while True:
                    cmd = cio.read()
                    if cmd is None:
                        return
                    if cmd.strip().upper() == "STARTTLS":
                        cio.send("500 5.5.1 command not recognized")
                        continue
                    uio.send(cmd)
                    break
        finally:
            up.close()


def _client_ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
