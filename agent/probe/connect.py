"""The byte streams a dialogue runs over: a plain TCP socket and, after the handshake, TLS on top of it.

Both read with the phase's deadline and count bytes against a budget, so the line reader above them
needs no special cases for plaintext and TLS.
"""

from __future__ import annotations

import errno
import socket
from typing import Protocol

from relaywatch.addresses import socket_family
from relaywatch.model import TranscriptLine
from relaywatch.probe.limits import Clock, ProbeError


class Stream(Protocol):
    def recv(self) -> bytes: ...  # b"" at end of stream
    def send(self, data: bytes) -> None: ...


class SocketStream:
    def __init__(self, sock: socket.socket, clock: Clock) -> None:
        self.sock, self.clock = sock, clock

    def recv(self) -> bytes:
        self.sock.settimeout(self.clock.remaining())
        try:
            return self.sock.recv(16384)
        except TimeoutError as exc:
            phase = self.clock.phase
            raise ProbeError(phase, "timeout", f"no answer within the deadline during {phase}") from exc
        except OSError as exc:
            raise ProbeError(self.clock.phase, "protocol", f"connection lost: {_os_reason(exc)}") from exc

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.clock.remaining())
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise ProbeError(self.clock.phase, "timeout", "server stopped reading") from exc
        except OSError as exc:
            raise ProbeError(self.clock.phase, "protocol", f"connection lost: {_os_reason(exc)}") from exc


def open_connection(address: str, port: int, clock: Clock) -> socket.socket:
    family = socket_family(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(clock.remaining())
    try:
        sock.connect((address, port))
    except TimeoutError as exc:
        sock.close()
        raise ProbeError("connect", "unreachable", f"no answer from {address} port {port}") from exc
    except OSError as exc:
        sock.close()
        raise ProbeError("connect", "unreachable", f"{address} port {port}: {_os_reason(exc)}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _os_reason(exc: OSError) -> str:
    if exc.errno is not None and exc.errno in errno.errorcode:
        return exc.strerror or errno.errorcode[exc.errno]
    return str(exc) or type(exc).__name__


MAX_TRANSCRIPT_LINES = 1000


class LineChannel:
    """Line-oriented protocol I/O over a Stream, with a transcript and the size caps."""

    def __init__(self, stream: Stream, clock: Clock, transcript: list[TranscriptLine]) -> None:
        self.stream, self.clock, self.transcript = stream, clock, transcript
        self.buffer = b""
        self.read_total = 0

    def note(self, text: str) -> None:
        self._keep("!", text)

    def _keep(self, direction: str, text: str) -> None:
        """The transcript is evidence, but bounded: each line cut at 1 KiB, at most 1,000 lines per probe."""
        if len(self.transcript) < MAX_TRANSCRIPT_LINES:
            self.transcript.append(TranscriptLine(direction, text[:1024], self.clock.elapsed()))
        elif len(self.transcript) == MAX_TRANSCRIPT_LINES:
            self.transcript.append(TranscriptLine("!", "transcript truncated", self.clock.elapsed()))

    def send_line(self, line: str, shown: str | None = None) -> None:
        self._keep("C", shown if shown is not None else line)
        self.stream.send(line.encode("ascii") + b"\r\n")

    def read_line(self) -> str:
        limits = self.clock.limits
        while True:
            nl = self.buffer.find(b"\n")
            if nl >= 0:
                raw, self.buffer = self.buffer[:nl], self.buffer[nl + 1 :]
                if len(raw) > limits.max_line:
                    self._too_long()
                text = raw.rstrip(b"\r").decode("utf-8", "replace")
                self._keep("S", text)
                return text
            if len(self.buffer) > limits.max_line:
                self._too_long()
            chunk = self.stream.recv()
            if not chunk:
                if self.buffer:
                    self._keep("S", self.buffer.decode("utf-8", "replace")[:200])
                raise ProbeError(self.clock.phase, "protocol", "server closed the connection")
            self.read_total += len(chunk)
            if self.read_total > limits.max_dialogue_bytes:
                raise ProbeError(
                    self.clock.phase, "protocol", f"server sent more than {limits.max_dialogue_bytes} bytes"
                )
            self.buffer += chunk

    def _too_long(self) -> None:
        preview = self.buffer[:120].decode("utf-8", "replace")
        self._keep("S", preview + "...")
        raise ProbeError(
            self.clock.phase, "protocol", f"server sent a line longer than {self.clock.limits.max_line} bytes"
        )

    def take_buffer(self) -> bytes:
        """Bytes the server sent beyond the last line read (there must be none before a TLS handshake)."""
        data, self.buffer = self.buffer, b""
        return data
