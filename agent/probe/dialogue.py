"""What the mail protocols have in common: capability classification and the STARTTLS state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from relaywatch.model import StartTLSState
from relaywatch.probe.connect import LineChannel

_FILLER = "X*#"


class Dialogue(Protocol):
    """One per protocol (smtp.py, imap.py, pop3.py); the probe drives them all the same way."""

    starttls_keyword: str  # how the capability is spelled: STARTTLS, STLS

    def greeting(self, chan: LineChannel) -> None: ...
    def capabilities(self, chan: LineChannel) -> tuple[str, ...]: ...
    def starttls(self, chan: LineChannel) -> tuple[bool, str]: ...
    def quit(self, chan: LineChannel) -> None: ...


def is_masked(token: str) -> bool:
    """A capability overwritten with filler, like Cisco ASA's `XXXXXXXA` in place of STARTTLS."""
    t = token.upper()
    if len(t) < 4:
        return False
    most = max(t.count(c) for c in _FILLER)
    return most >= len(t) - 1


def classify(capabilities: Iterable[str], keyword: str) -> StartTLSState:
    words = [c.split()[0].upper() for c in capabilities if c.split()]
    if keyword in words:
        return StartTLSState.OFFERED
    if any(is_masked(w) for w in words):
        return StartTLSState.MASKED
    return StartTLSState.MISSING
