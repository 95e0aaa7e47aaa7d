"""The TLS handshake, driven through memory BIOs so every byte read obeys the probe's deadline and caps.

Verification is off on purpose: the chain is captured whatever it is, and judged afterwards by the
analysis, so a failed validation never loses the evidence.
"""

from __future__ import annotations

import dataclasses

from OpenSSL import SSL, crypto
from relaywatch.model import TLSSession
from relaywatch.probe.connect import SocketStream
from relaywatch.probe.limits import Clock, ProbeError

_CONTEXT: SSL.Context | None = None
CIPHERS = b"ALL:!aNULL:!eNULL:@SECLEVEL=0"


def client_context() -> SSL.Context:
    """One context for all probes: offers TLS 1.0 to 1.3 and every authenticated cipher, to *see* what the
    path picks. Never anonymous (aNULL) or unencrypted (eNULL) suites: a server that prefers its own order
    (Postfix's `tls_preempt_cipherlist`) would pick an anonymous suite and present no certificate at all.
    Security level 0 keeps TLS 1.0/1.1 (SHA-1 signatures) reachable, so a downgrade is seen, not refused."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_VERSION)
        ctx.set_cipher_list(CIPHERS)
        ctx.set_verify(SSL.VERIFY_NONE)
        ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
        _CONTEXT = ctx
    return _CONTEXT


class TLSStream:
    """A Stream over an established TLS connection (for the dialogue after STARTTLS)."""

    def __init__(self, conn: SSL.Connection, raw: SocketStream) -> None:
        self.conn, self.raw = conn, raw

    def _flush(self) -> None:
        while True:
            try:
                out = self.conn.bio_read(65536)
            except SSL.WantReadError:
                return
            self.raw.send(out)

    def recv(self) -> bytes:
        while True:
            try:
                return self.conn.recv(16384)
            except SSL.WantReadError:
                self._flush()
                data = self.raw.recv()
                if not data:
                    return b""
                self.conn.bio_write(data)
            except SSL.ZeroReturnError:
                return b""
            except SSL.Error as exc:
                raise ProbeError(self.raw.clock.phase, "tls", f"TLS error: {_ssl_reason(exc)}") from exc

    def send(self, data: bytes) -> None:
        try:
            self.conn.sendall(data)
        except SSL.Error as exc:
            raise ProbeError(self.raw.clock.phase, "tls", f"TLS error: {_ssl_reason(exc)}") from exc
        self._flush()


def handshake(raw: SocketStream, server_name: str | None) -> tuple[TLSSession, TLSStream]:
    """Whatever ends the handshake (an OpenSSL error, the peer closing or stalling after its Certificate, the
    size cap), the certificates that arrived are kept on the ProbeError: they are the evidence."""
    clock = raw.clock
    conn = SSL.Connection(client_context(), None)
    conn.set_connect_state()
    if server_name:
        conn.set_tlsext_host_name(server_name.encode("idna"))
    stream = TLSStream(conn, raw)
    seen = bytearray()  # the server's handshake bytes as sent, for certificates OpenSSL refuses to parse
    try:
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                stream._flush()
                data = raw.recv()
                if not data:
                    raise ProbeError(
                        clock.phase, "tls", "connection closed during the TLS handshake"
                    ) from None
                if len(seen) + len(data) > clock.limits.max_handshake_bytes:
                    raise ProbeError(clock.phase, "tls", "TLS handshake larger than the size cap") from None
                seen += data
                conn.bio_write(data)
    except SSL.Error as exc:
        error = ProbeError(clock.phase, "tls", f"TLS handshake failed: {_ssl_reason(exc)}")
        error.session = _partial(conn, clock, bytes(seen))
        raise error from exc
    except ProbeError as exc:
        exc.session = _partial(conn, clock, bytes(seen))
        raise
    stream._flush()
    return _session(conn, clock), stream


def _partial(conn: SSL.Connection, clock: Clock, seen: bytes) -> TLSSession:
    """The chain seen before the handshake ended; nothing else about the session is known. OpenSSL's own
    copy when it parsed one, else the Certificate message read from the records (TLS 1.2 and older send it
    in clear): a certificate OpenSSL refuses (odd string types, invalid encodings) is still evidence."""
    session = dataclasses.replace(_session(conn, clock), version="", cipher="", group=None)
    if session.chain_der:
        return session
    chain, dropped = _capped(certificates_in_records(seen), clock)
    return dataclasses.replace(session, chain_der=tuple(chain), chain_truncated=dropped)


def certificates_in_records(data: bytes) -> list[bytes]:
    """The certificate_list of the first Certificate handshake message in plaintext TLS records. Stops at the
    first record that is not a handshake record (after it, TLS 1.3 encrypts everything)."""
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 22:
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    pos = 0
    while pos + 4 <= len(handshake):
        kind, length = handshake[pos], int.from_bytes(handshake[pos + 1 : pos + 4], "big")
        body = bytes(handshake[pos + 4 : pos + 4 + length])
        if kind == 11:
            return _certificate_list(body)
        pos += 4 + length
    return []


def _certificate_list(body: bytes) -> list[bytes]:
    out: list[bytes] = []
    end = min(len(body), 3 + int.from_bytes(body[:3], "big"))
    pos = 3
    while pos + 3 <= end:
        length = int.from_bytes(body[pos : pos + 3], "big")
        der = body[pos + 3 : pos + 3 + length]
        if not der:
            break
        out.append(der)  # a truncated last certificate is kept as it arrived
        pos += 3 + length
    return out


def _capped(ders: list[bytes], clock: Clock) -> tuple[list[bytes], int]:
    """The presented chain up to the caps, in order. The leaf is always kept, whatever its size (the
    handshake's byte cap bounds it): skipping it would make the next certificate, perhaps the relay's real
    leaf copied behind a forged one, pass for the leaf. Past the first certificate over a cap nothing more
    is kept, so no certificate moves up a position."""
    limits = clock.limits
    chain: list[bytes] = []
    for der in ders:
        if chain and (len(chain) >= limits.max_chain or len(der) > limits.max_cert_size):
            break
        chain.append(der)
    return chain, len(ders) - len(chain)


def _session(conn: SSL.Connection, clock: Clock) -> TLSSession:
    # DER straight from OpenSSL: re-parsing here would throw away a certificate that OpenSSL accepted but
    # cryptography rejects (say, an invalid version), which is exactly the evidence worth keeping
    ders = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in conn.get_peer_cert_chain() or []]
    chain, dropped = _capped(ders, clock)
    return TLSSession(
        version=conn.get_protocol_version_name(),
        cipher=conn.get_cipher_name() or "",
        group=conn.get_group_name(),
        chain_der=tuple(chain),
        chain_truncated=dropped,
    )


def _ssl_reason(exc: SSL.Error) -> str:
    """OpenSSL's error queue as one short line (an alert from the server shows as 'tlsv1 alert ...')."""
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and len(item) >= 3:
            parts.append(str(item[2]))
    return "; ".join(parts) or str(exc) or type(exc).__name__
