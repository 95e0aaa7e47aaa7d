"""Lab mail servers on loopback: a relay that talks like Exchange Online (SMTP, IMAP, POP3, with
STARTTLS or implicit TLS), and the behaviours the probe must classify (STARTTLS missing, masked,
rejected; old TLS). Real sockets and real OpenSSL; each server runs in its own threads and stops cleanly."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import socketserver
import ssl
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relaywatch.addresses import socket_family
from relaywatch.lab.pki import Issued
from relaywatch.protocols import protocol_named

EXCHANGE_HOST = "LAB0PR01MB0001.relaywatch.test"
EHLO_BEFORE = [
    "SIZE 157286400",
    "PIPELINING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "STARTTLS",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "SMTPUTF8",
]
EHLO_AFTER = [
    "SIZE 157286400",
    "PIPELINING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "AUTH LOGIN XOAUTH2",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "SMTPUTF8",
]


def server_context(
    leaf: Issued,
    chain: list[Issued] | tuple[Issued, ...] = (),
    tls_max: str | None = None,
    extra_pem: bytes = b"",
) -> ssl.SSLContext:
    """A server TLS context presenting leaf + chain (and any extra PEM, for hostile chains)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "chain.pem", Path(d) / "key.pem"
        cert.write_bytes(leaf.cert_pem() + b"".join(c.cert_pem() for c in chain) + extra_pem)
        key.write_bytes(leaf.key_pem())
        ctx.load_cert_chain(cert, key)
    if tls_max == "1.0":
        with warnings.catch_warnings():  # deprecated on purpose: this lab server is the bad example
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class LabServer:
    """Start with `with LabServer(handler) as s:`; `s.port` is the bound port on `host`."""

    def __init__(
        self, handle: Callable[[socket.socket, LabServer], None], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.handle_fn = handle
        self.stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(30)
                # small writes must not wait for delayed ACKs (as real relays do)
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # the client went away or misbehaved: a lab server just drops it
                with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                    outer.handle_fn(self.request, outer)

        family = socket_family(host)
        _Server.address_family = family
        self.server = _Server((host, port), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> LabServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Lines:
    """Line I/O on a plain or TLS socket for the lab servers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def rebind(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, *lines: str) -> None:
        self.sock.sendall(b"".join(line.encode() + b"\r\n" for line in lines))

    def read(self) -> str | None:
        line = self.file.readline(65536)
        return line.decode("utf-8", "replace").rstrip("\r\n") if line else None


@dataclass
class Mail:
    """A mail server's behaviour. starttls: offered | missing | masked | rejected."""

    protocol: str = "smtp"
    tls: ssl.SSLContext | None = None
    implicit_tls: bool = False
    starttls: str = "offered"
    auth_before_tls: bool = False  # SMTP: advertise AUTH in the EHLO before STARTTLS (a stripping middlebox)

    def __call__(self, sock: socket.socket, server: LabServer) -> None:
        if self.implicit_tls and self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True)
        session: Callable[[Mail, Lines, socket.socket], None] = protocol_named(self.protocol).load_lab()
        session(self, Lines(sock), sock)

    def upgrade(self, io: Lines, sock: socket.socket) -> socket.socket:
        assert self.tls is not None
        tls = self.tls.wrap_socket(sock, server_side=True)
        io.rebind(tls)
        return tls

    def extensions(self, secure: bool) -> list[str]:
        exts = list(EHLO_AFTER if secure else EHLO_BEFORE)
        if secure:
            return exts
        if self.auth_before_tls:
            exts.insert(4, "AUTH LOGIN PLAIN")
        if self.starttls == "missing":
            exts.remove("STARTTLS")
        if self.starttls == "masked":
            exts[exts.index("STARTTLS")] = "XXXXXXXA"
        return exts


def smtp_session(mail: Mail, io: Lines, sock: socket.socket) -> None:
    """The lab side of protocols.SMTP: talks like Exchange Online."""
    now = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    io.send(f"220 {EXCHANGE_HOST} Microsoft ESMTP MAIL Service ready at {now}")
    secure = mail.implicit_tls
    while (line := io.read()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            exts = mail.extensions(secure)
            if verb == "HELO":
                io.send(f"250 {EXCHANGE_HOST} Hello")
                continue
            head = [f"250-{EXCHANGE_HOST} Hello [127.0.0.1]"]
            io.send(*head, *[f"250-{e}" for e in exts[:-1]], f"250 {exts[-1]}")
        elif verb == "STARTTLS" and not secure:
            if mail.starttls == "offered" and mail.tls is not None:
                io.send("220 2.0.0 SMTP server ready")
                sock = mail.upgrade(io, sock)
                secure = True
            elif mail.starttls == "masked":
                io.send("500 5.5.1 command not recognized")
            elif mail.starttls == "rejected":
                io.send("454 4.7.0 TLS not available due to temporary reason")
            else:
                io.send("502 5.5.2 Command not implemented")
        elif verb == "QUIT":
            io.send("221 2.0.0 Service closing transmission channel")
            return
        elif verb in ("NOOP", "RSET", "MAIL", "RCPT"):
            io.send("250 2.0.0 OK")
        else:
            io.send("500 5.3.3 Unrecognized command")


def imap_session(mail: Mail, io: Lines, sock: socket.socket) -> None:
    """The lab side of protocols.IMAP."""
    io.send("* OK The Microsoft Exchange IMAP4 service is ready.")
    secure = mail.implicit_tls
    while (line := io.read()) is not None:
        tag, _, command = line.partition(" ")
        command = command.upper().strip()
        if command == "CAPABILITY":
            caps = [
                "IMAP4",
                "IMAP4rev1",
                "SASL-IR",
                "UIDPLUS",
                "ID",
                "UNSELECT",
                "CHILDREN",
                "IDLE",
                "NAMESPACE",
                "LITERAL+",
            ]
            caps += ["AUTH=PLAIN", "AUTH=XOAUTH2"] if secure else ["LOGINDISABLED"]
            if not secure and mail.starttls in ("offered", "rejected"):
                caps.append("STARTTLS")
            if not secure and mail.starttls == "masked":
                caps.append("XXXXXXXX")
            io.send("* CAPABILITY " + " ".join(caps), f"{tag} OK CAPABILITY completed.")
        elif command == "STARTTLS" and not secure and mail.starttls == "offered" and mail.tls:
            io.send(f"{tag} OK Begin TLS negotiation now.")
            sock = mail.upgrade(io, sock)
            secure = True
        elif command == "LOGOUT":
            io.send(
                "* BYE Microsoft Exchange Server IMAP4 server signing off.", f"{tag} OK LOGOUT completed."
            )
            return
        else:
            io.send(f"{tag} BAD Command Error. 12")


def pop3_session(mail: Mail, io: Lines, sock: socket.socket) -> None:
    """The lab side of protocols.POP3."""
    io.send("+OK The Microsoft Exchange POP3 service is ready.")
    secure = mail.implicit_tls
    while (line := io.read()) is not None:
        command = line.upper().strip()
        if command == "CAPA":
            caps = ["TOP", "UIDL", "SASL PLAIN XOAUTH2" if secure else "SASL", "USER"]
            if not secure and mail.starttls in ("offered", "rejected"):
                caps.append("STLS")
            if not secure and mail.starttls == "masked":
                caps.append("XXXX")
            io.send("+OK", *caps, ".")
        elif command == "STLS" and not secure and mail.starttls == "offered" and mail.tls:
            io.send("+OK Begin TLS negotiation")
            sock = mail.upgrade(io, sock)
            secure = True
        elif command == "QUIT":
            io.send("+OK Microsoft Exchange Server POP3 server signing off.")
            return
        else:
            io.send("-ERR Protocol error. 14")
