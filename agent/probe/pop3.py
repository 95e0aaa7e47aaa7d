"""POP3 (RFC 1939) with STLS (RFC 2595): greeting, CAPA, STLS, CAPA, QUIT."""

from __future__ import annotations

from relaywatch import protocols
from relaywatch.probe.connect import LineChannel
from relaywatch.probe.limits import ProbeError


class POP3:
    spec = protocols.POP3
    starttls_keyword = spec.starttls_keyword

    def __init__(self, client_name: str = "") -> None:
        pass  # POP3 sends no client name

    def greeting(self, chan: LineChannel) -> None:
        line = chan.read_line()
        if not line.startswith("+OK"):
            raise ProbeError("greeting", "protocol", f"not a POP3 greeting: {line[:80]!r}")

    def capabilities(self, chan: LineChannel) -> tuple[str, ...]:
        chan.send_line(self.spec.capabilities_command)
        status = chan.read_line()
        if not status.startswith("+OK"):
            return ()
        caps: list[str] = []
        for _ in range(chan.clock.limits.max_reply_lines):
            line = chan.read_line()
            if line == ".":
                return tuple(caps)
            caps.append(line.strip())
        raise ProbeError(chan.clock.phase, "protocol", "CAPA response longer than the line cap")

    def starttls(self, chan: LineChannel) -> tuple[bool, str]:
        chan.send_line(self.spec.upgrade_command)
        status = chan.read_line()
        return status.startswith("+OK"), status

    def quit(self, chan: LineChannel) -> None:
        chan.send_line("QUIT")
        chan.read_line()
