"""IMAP4rev1 (RFC 3501) with STARTTLS: greeting, CAPABILITY, STARTTLS, CAPABILITY, LOGOUT."""

from __future__ import annotations

import itertools
import re

from relaywatch import protocols
from relaywatch.probe.connect import LineChannel
from relaywatch.probe.limits import ProbeError

_CAPS_IN_TEXT = re.compile(r"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


class IMAP:
    spec = protocols.IMAP
    starttls_keyword = spec.starttls_keyword

    def __init__(self, client_name: str = "") -> None:
        self._tags = (f"rw{n}" for n in itertools.count(1))

    def greeting(self, chan: LineChannel) -> None:
        line = chan.read_line()
        if not (line.upper().startswith("* OK") or line.upper().startswith("* PREAUTH")):
            raise ProbeError("greeting", "protocol", f"not an IMAP greeting: {line[:80]!r}")

    def _command(self, chan: LineChannel, command: str) -> tuple[str, list[str]]:
        tag = next(self._tags)
        chan.send_line(f"{tag} {command}")
        untagged: list[str] = []
        for _ in range(chan.clock.limits.max_reply_lines):
            line = chan.read_line()
            if line.startswith(tag + " "):
                return line[len(tag) + 1 :], untagged
            if not line.startswith("*") and not line.startswith("+"):
                raise ProbeError(chan.clock.phase, "protocol", f"not an IMAP response: {line[:80]!r}")
            untagged.append(line)
        raise ProbeError(chan.clock.phase, "protocol", "response longer than the line cap")

    def capabilities(self, chan: LineChannel) -> tuple[str, ...]:
        status, untagged = self._command(chan, self.spec.capabilities_command)
        caps: list[str] = []
        for line in untagged:
            if line.upper().startswith("* CAPABILITY "):
                caps.extend(line[len("* CAPABILITY ") :].split())
        m = _CAPS_IN_TEXT.search(status)
        if m:
            caps.extend(m.group(1).split())
        return tuple(dict.fromkeys(caps))

    def starttls(self, chan: LineChannel) -> tuple[bool, str]:
        status, _ = self._command(chan, self.spec.upgrade_command)
        return status.upper().startswith("OK"), status

    def quit(self, chan: LineChannel) -> None:
        self._command(chan, "LOGOUT")
