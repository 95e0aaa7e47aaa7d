"""Bounds on everything a probe reads or waits for: a hostile server gets a verdict, never a hang."""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass


class Phase(enum.StrEnum):
    """The phases of a probe, in order: timings, failures (`<phase>_failed`) and the `phase` label."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    GREETING = "greeting"
    CAPABILITIES = "capabilities"  # EHLO, CAPABILITY, CAPA (exported as `ehlo` before 0.2)
    STARTTLS = "starttls"
    HANDSHAKE = "handshake"
    POST_TLS = "post_tls"  # the capabilities again, inside TLS
    LOCAL_PEER = "local_peer"  # finding the process on this host that holds the far end
    TOTAL = "total"


@dataclass(frozen=True, slots=True)
class Limits:
    timeout: float = 10.0  # whole probe
    phase_timeout: float = 8.0  # any one phase (connect, greeting, capabilities, starttls, handshake)
    max_line: int = 8192  # bytes in one protocol line (RFC 5321 allows 512)
    max_reply_lines: int = 512  # lines in one multi-line reply
    max_dialogue_bytes: int = 1 << 20  # plaintext bytes read in the whole dialogue
    max_handshake_bytes: int = 1 << 20  # TLS bytes read until the handshake completes
    max_chain: int = 16  # certificates kept from the presented chain
    max_cert_size: int = 32 * 1024  # DER bytes of one certificate
    max_addresses: int = 16  # addresses probed per target: each is a probe and a set of series

    @property
    def target_timeout(self) -> float:
        """The longest one target can take: resolving and all its addresses share the one timeout."""
        return self.timeout

    def with_timeout(self, timeout: float) -> Limits:
        return dataclasses.replace(self, timeout=timeout, phase_timeout=min(timeout, self.phase_timeout))


class ProbeError(Exception):
    """Ends a probe: phase where it happened, kind (unreachable, timeout, protocol, tls) and what."""

    def __init__(self, phase: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.phase, self.kind, self.message = phase, kind, message
        self.session: object | None = None  # a TLSSession captured before a handshake failed


class Clock:
    """The probe's time budget; each phase gets the smaller of its own cap and what is left overall."""

    def __init__(self, limits: Limits, deadline: float | None = None) -> None:
        self.limits = limits
        self.start = time.monotonic()
        self.end = min(self.start + limits.timeout, deadline or float("inf"))  # a target's one timeout
        self.phase: str = Phase.CONNECT
        self.phase_end = self.end
        self.timings: dict[str, float] = {}
        self._phase_start = self.start

    def begin(self, phase: str) -> None:
        now = time.monotonic()
        self.phase, self._phase_start = phase, now
        self.phase_end = min(self.end, now + self.limits.phase_timeout)

    def finish(self) -> None:
        self.timings[self.phase] = self.timings.get(self.phase, 0.0) + time.monotonic() - self._phase_start

    def remaining(self) -> float:
        left = self.phase_end - time.monotonic()
        if left <= 0:
            raise ProbeError(self.phase, "timeout", f"no answer within the deadline during {self.phase}")
        return left

    def elapsed(self) -> float:
        return time.monotonic() - self.start
