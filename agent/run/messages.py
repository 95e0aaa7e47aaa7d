"""What the agent and its probe worker say to each other: typed frames, JSON on the wire (codec.py).

The worker parses attacker-controlled certificates and protocol lines, so the agent trusts nothing it
sends beyond these shapes: every reply is decoded against `Reply`, whose fields are the frozen models,
and anything else (malformed JSON, a wrong type, an oversized frame) ends that worker, never the agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaywatch.analysis.profile_ref import ProfileRef
from relaywatch.host.model import HostReport
from relaywatch.model import ProbeResult
from relaywatch.probe.options import ProbeOptions
from relaywatch.target import Target


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    target: Target
    profile: ProfileRef
    options: ProbeOptions


@dataclass(frozen=True, slots=True)
class Request:
    """kind: probe (with `probe`), profile (with `spec`: check and load a profile), host (inventory)."""

    rid: int
    kind: str
    probe: ProbeRequest | None = None
    spec: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    rid: int
    ok: bool
    error_kind: str = ""  # profile: a profile problem (ProfileError); error: anything else
    error: str = ""
    results: tuple[ProbeResult, ...] | None = None
    profile: ProfileRef | None = None
    host: HostReport | None = None
