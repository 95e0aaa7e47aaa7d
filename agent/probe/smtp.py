"""SMTP (RFC 5321) with STARTTLS (RFC 3207): greeting, EHLO, STARTTLS, EHLO again, QUIT."""

from __future__ import annotations

import re
from dataclasses import dataclass

from relaywatch import protocols
from relaywatch.probe.connect import LineChannel
from relaywatch.probe.limits import ProbeError

_CODE = re.compile(r"[0-9]{3}")  # ASCII digits only: "²²⁰".isdigit() is True


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # text after "250-" / "250 "

    @property
    def text(self) -> str:
        return " / ".join(self.lines)


def read_reply(chan: LineChannel) -> Reply:
    lines: list[str] = []
    code: int | None = None
    while True:
        line = chan.read_line()
        if not _CODE.match(line) or (len(line) > 3 and line[3] not in "- "):
            raise ProbeError(chan.clock.phase, "protocol", f"not an SMTP reply: {line[:80]!r}")
        this = int(line[:3])
        if code is not None and this != code:
            raise ProbeError(
                chan.clock.phase, "protocol", f"reply code changed inside a reply: {line[:80]!r}"
            )
        code = this
        lines.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return Reply(code, tuple(lines))
        if len(lines) >= chan.clock.limits.max_reply_lines:
            raise ProbeError(
                chan.clock.phase, "protocol", f"reply longer than {chan.clock.limits.max_reply_lines} lines"
            )


class SMTP:
    spec = protocols.SMTP
    starttls_keyword = spec.starttls_keyword

    def __init__(self, client_name: str) -> None:
        self.ehlo_name = client_name

    def greeting(self, chan: LineChannel) -> None:
        reply = read_reply(chan)
        if reply.code != 220:
            raise ProbeError("greeting", "protocol", f"server refused the session: {reply.code} {reply.text}")

    def capabilities(self, chan: LineChannel) -> tuple[str, ...]:
        chan.send_line(f"{self.spec.capabilities_command} {self.ehlo_name}")
        reply = read_reply(chan)
        if reply.code in (500, 502):
            return ()  # no ESMTP: no extension, so no STARTTLS either
        if reply.code != 250:  # throttled (421), EHLO name refused (501, 550): not a sign of stripping
            raise ProbeError(chan.clock.phase, "protocol", f"EHLO refused: {reply.code} {reply.text[:200]}")
        return tuple(line.strip() for line in reply.lines[1:])

    def starttls(self, chan: LineChannel) -> tuple[bool, str]:
        chan.send_line(self.spec.upgrade_command)
        reply = read_reply(chan)
        return reply.code == 220, f"{reply.code} {reply.text}"

    def quit(self, chan: LineChannel) -> None:
        chan.send_line("QUIT")
        read_reply(chan)
