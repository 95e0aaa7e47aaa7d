"""MTA-STS (RFC 8461): the domain's TXT record and policy, parsed by the RFC, and an MX host judged by it.

The policy is attacker-controlled text (from the network, and through whatever sits on the HTTPS path):
lines end in CRLF or LF (§3.2), `key: value` pairs, `mx` repeated, unknown keys ignored; a policy
without a valid version, mode, max_age or (unless mode none) mx is no policy. A CR inside a line, a
field repeated where it may not be, or a value that is not what the grammar says makes it invalid, never
a traceback. No maintained library parses only this (checkdmarc brings a whole DNS stack)."""

from __future__ import annotations

import re
from dataclasses import dataclass

MODES = ("enforce", "testing", "none")
MAX_AGE_LIMIT = 31557600  # §3.2: at most about one year
_ID = re.compile(r"^[A-Za-z0-9]{1,32}\Z")
_MX = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}\.?\Z")
_KEY = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")
MAX_MX = 32


class PolicyError(ValueError):
    """A TXT record or a policy that does not follow RFC 8461."""


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str
    max_age: int
    mx: tuple[str, ...]


def parse_txt(records: tuple[str, ...]) -> str:
    """The policy id from the `_mta-sts` TXT RRset: exactly one record starting `v=STSv1` (§3.1)."""
    versions = [r for r in (txt_value(t) for t in records) if r.startswith("v=STSv1")]
    if len(versions) != 1:
        raise PolicyError(f"{len(versions)} TXT records start with v=STSv1 (exactly one is valid)")
    fields = dict(_pairs(versions[0]))
    policy_id = fields.get("id", "")
    if not _ID.match(policy_id):
        raise PolicyError(f"the TXT record's id {policy_id[:40]!r} is not 1 to 32 letters and digits")
    return policy_id


def txt_value(record: str) -> str:
    parts = [p for i, p in enumerate(record.split('"')) if i % 2 == 1]
    return "".join(parts) if parts else record


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for field in text.split(";"):
        key, sep, value = field.strip().partition("=")
        if sep:
            out.append((key.strip(), value.strip()))
    return out


def parse_policy(text: str) -> Policy:
    """§3.2: `version: STSv1`, `mode`, `max_age`, `mx` (repeated); lines end in CRLF or LF."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip():
            continue
        if "\r" in line:
            raise PolicyError(f"line {number}: a bare CR (only CRLF or LF end a line)")
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip(" \t")
        if not sep or not _KEY.match(key):
            raise PolicyError(f"line {number}: not `key: value`: {line[:60]!r}")
        if key == "mx":
            if len(mx) >= MAX_MX:
                raise PolicyError(f"more than {MAX_MX} mx lines")
            mx.append(_mx_pattern(value, number))
        elif key in ("version", "mode", "max_age"):
            if key in fields:
                raise PolicyError(f"line {number}: {key} given twice")
            fields[key] = value
    return _policy(fields, tuple(mx))


def _mx_pattern(value: str, number: int) -> str:
    pattern = value.lower()
    if not _MX.match(pattern):
        raise PolicyError(f"line {number}: mx {value[:60]!r} is not a host name or *.domain pattern")
    return pattern.rstrip(".")


def _policy(fields: dict[str, str], mx: tuple[str, ...]) -> Policy:
    if fields.get("version") != "STSv1":
        raise PolicyError(f"version {fields.get('version', '')[:20]!r} is not STSv1")
    mode = fields.get("mode", "")
    if mode not in MODES:
        raise PolicyError(f"mode {mode[:20]!r} is not enforce, testing or none")
    age = fields.get("max_age", "")
    if not age.isascii() or not age.isdigit() or len(age) > 10 or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {age[:20]!r} is not a number of seconds up to {MAX_AGE_LIMIT}")
    if mode != "none" and not mx:
        raise PolicyError("no mx line")
    return Policy(mode, int(age), mx)


def mx_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """§4.1: a pattern equals the host, or `*.` stands for exactly its leftmost label."""
    host = host.lower().rstrip(".")
    for p in patterns:
        if p == host:
            return True
        if p.startswith("*.") and "." in host and host.split(".", 1)[1] == p[2:]:
            return True
    return False
