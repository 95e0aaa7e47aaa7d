"""The protocol registry: every fact about a mail protocol in one table.

Target parsing (schemes, default and well-known ports), the probe (which dialogue drives the session),
the CLI help and the lab (which server and proxy speak it) all derive from `SCHEMES` below. Adding a
protocol (LMTP, ManageSieve STARTTLS, ...) is one `Protocol` and its `Scheme`s here, plus its dialogue
module under probe/ and a lab handler under lab/. Dialogues and lab handlers are named by import path
so that the agent's main process can parse targets without loading them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str  # the `protocol` of a target, and a JSON field
    title: str  # for people: help texts and reports
    dialogue: str  # "module:Class" of the probe side (probe/dialogue.py's Dialogue protocol)
    lab: str  # "module:function" of the lab server side (lab/servers.py)
    capabilities_command: str  # EHLO, CAPABILITY, CAPA
    starttls_keyword: str  # how the capability is spelled in that answer
    upgrade_command: str  # what the client sends to start TLS
    tagged: bool = False  # commands carry a client-chosen tag first (IMAP)

    def load_dialogue(self) -> Any:
        return _load(self.dialogue)

    def load_lab(self) -> Any:
        return _load(self.lab)


@dataclass(frozen=True, slots=True)
class Scheme:
    name: str  # smtp://, smtps://, ...
    protocol: Protocol | None  # None: tls://, the handshake is the whole dialogue
    starttls: bool  # True: plaintext dialogue, then STARTTLS; False: TLS from the first byte
    default_port: int
    ports: tuple[int, ...] = ()  # well-known ports that imply this scheme when a target has none


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


SMTP = Protocol(
    "smtp",
    "SMTP (RFC 5321, STARTTLS RFC 3207)",
    "relaywatch.probe.smtp:SMTP",
    "relaywatch.lab.servers:smtp_session",
    "EHLO",
    "STARTTLS",
    "STARTTLS",
)
IMAP = Protocol(
    "imap",
    "IMAP (RFC 3501)",
    "relaywatch.probe.imap:IMAP",
    "relaywatch.lab.servers:imap_session",
    "CAPABILITY",
    "STARTTLS",
    "STARTTLS",
    tagged=True,
)
POP3 = Protocol(
    "pop3",
    "POP3 (RFC 1939, STLS RFC 2595)",
    "relaywatch.probe.pop3:POP3",
    "relaywatch.lab.servers:pop3_session",
    "CAPA",
    "STLS",
    "STLS",
)
PROTOCOLS: tuple[Protocol, ...] = (SMTP, IMAP, POP3)

SCHEMES: tuple[Scheme, ...] = (
    Scheme("smtp", SMTP, True, 587, (25, 587, 2525)),
    Scheme("smtps", SMTP, False, 465, (465,)),
    Scheme("imap", IMAP, True, 143, (143,)),
    Scheme("imaps", IMAP, False, 993, (993,)),
    Scheme("pop3", POP3, True, 110, (110,)),
    Scheme("pop3s", POP3, False, 995, (995,)),
    Scheme("tls", None, False, 443),
    # `mx:domain`: the domain's MX hosts (RFC 5321 §5.1), each on port 25 with STARTTLS, DANE and MTA-STS
    Scheme("mx", SMTP, True, 25),
)
MX_SCHEME = "mx"
BY_NAME: dict[str, Scheme] = {s.name: s for s in SCHEMES}
BY_PORT: dict[int, Scheme] = {p: s for s in SCHEMES for p in s.ports}
DEFAULT_SCHEME = BY_NAME["smtp"]  # a bare host: client submission to Microsoft 365 (587, STARTTLS)
FALLBACK_SCHEME = BY_NAME["tls"]  # host:port on a port no mail protocol owns: implicit TLS


def protocol_named(name: str) -> Protocol:
    return next(p for p in PROTOCOLS if p.name == name)


def help_text() -> str:
    """The CLI's description of what a target may be."""
    schemes = ", ".join(f"{s.name}://" for s in SCHEMES if s.name != MX_SCHEME)
    ports = ", ".join(f"{p} {s.name}" for p, s in sorted(BY_PORT.items()))
    return (
        f"host[:port] or a URL {schemes} (default port per scheme); without a scheme the port decides "
        f"({ports}; other ports: {FALLBACK_SCHEME.name}); no port: {DEFAULT_SCHEME.name} "
        f"{DEFAULT_SCHEME.default_port}; {MX_SCHEME}:DOMAIN probes the domain's MX hosts on port 25 "
        "(DANE, MTA-STS)"
    )
