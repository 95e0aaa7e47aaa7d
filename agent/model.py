"""Typed, frozen results passed along the pipeline; JSON is derived from them, never built by hand."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relaywatch.target import Target


class Verdict(enum.StrEnum):
    """Most severe first: the declaration order is the contract for picking one verdict per probe.

    Every fact about a verdict stands beside it (one place): its meaning and advice for the report and
    the status page, its colour for the page and the dashboard, and whether it means interception.
    A verdict added here appears in the report, the page, the metrics, the dashboard and the rules' tests.
    """

    meaning: str
    advice: str
    colour: str

    def __new__(cls, value: str, colour: str, meaning: str, advice: str) -> Verdict:
        member = str.__new__(cls, value)
        member._value_ = value
        member.colour, member.meaning, member.advice = colour, meaning, advice
        return member

    INTERCEPTED = (
        "intercepted",
        "#8f0014",
        "the TLS session is re-signed by something between this host and the relay (TLS interception)",
        "find the product named below (antivirus mail shield, firewall or proxy doing TLS inspection) and "
        "exempt the relay from it; until then mail and credentials are readable by it",
    )
    STARTTLS_STRIPPED = (
        "starttls_stripped",
        "#d00000",
        "STARTTLS was hidden or refused on the way, so mail would travel in clear text",
        "check firewalls for ESMTP inspection (Cisco ASA: 'no allow-tls' in the ESMTP policy map) and "
        "security software that proxies SMTP",
    )
    TLS_DOWNGRADED = (
        "tls_downgraded",
        "#e05a00",
        "TLS was negotiated below the profile's minimum version",
        "look for a middlebox that terminates TLS with old settings, or a relay that is not the real one",
    )
    UNEXPECTED_ISSUER = (
        "unexpected_issuer",
        "#7a4fb0",
        "a publicly trusted, CT-logged certificate from a CA this profile does not list: the relay operator "
        "may have changed CAs, or a public CA mis-issued",
        "compare the issuing CA with the operator's announcements and update the profile's anchors; if the "
        "operator did not change CAs, report the certificate to the CA (it is in CT logs)",
    )
    CERTIFICATE_INVALID = (
        "certificate_invalid",
        "#c27c00",
        "the chain leads to the expected roots, but the certificate is expired, not yet valid, or for "
        "another name",
        "check this host's clock first; then the target name and the profile's names",
    )
    PROTOCOL_ERROR = (
        "protocol_error",
        "#8a6d00",
        "the peer did not complete the mail dialogue or the TLS handshake",
        "see the transcript: a middlebox may reset, stall or block the session",
    )
    UNREACHABLE = (
        "unreachable",
        "#6e6e6e",
        "the relay could not be reached",
        "check DNS, routing and outbound firewall rules for this port",
    )
    OK = (
        "ok",
        "#1a7f37",
        "the path presents the relay's real chain over a proper TLS session",
        "nothing",
    )

    @classmethod
    def of(cls, value: str) -> Verdict:
        """The member for its exported word (`Verdict(value)` would read as a call of __new__)."""
        try:
            return _BY_VALUE[value]
        except KeyError:
            raise ValueError(f"unknown verdict {value!r}") from None

    @property
    def severity_rank(self) -> int:
        """0 for the most severe; the order of declaration."""
        return _RANK[self]

    @property
    def is_interception(self) -> bool:
        """What relaywatch_interception_detected and the paging alert mean."""
        return self is Verdict.INTERCEPTED


_RANK = {v: i for i, v in enumerate(Verdict)}
_BY_VALUE = {v.value: v for v in Verdict}


class StartTLSState(enum.StrEnum):
    OFFERED = "offered"
    MISSING = "missing"
    MASKED = "masked"
    REJECTED = "rejected"
    NOT_APPLICABLE = "not_applicable"
    UNKNOWN = "unknown"  # the dialogue ended before the capabilities were read


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One protocol line; direction is C (client sent), S (server sent) or ! (event, e.g. TLS started)."""

    direction: str
    text: str
    at: float  # seconds since the probe started


@dataclass(frozen=True, slots=True)
class StartTLS:
    state: StartTLSState
    capabilities: tuple[str, ...] = ()  # before TLS (EHLO keywords, IMAP/POP3 capabilities)
    capabilities_after_tls: tuple[str, ...] = ()
    reply: str | None = None  # the server's answer to STARTTLS/STLS


@dataclass(frozen=True, slots=True)
class TLSSession:
    version: str  # "TLSv1.3"
    cipher: str
    group: str | None
    signature_algorithm: str | None
    chain_der: tuple[bytes, ...]  # as presented, leaf first, capped
    chain_truncated: int = 0  # certificates dropped by the chain-length / size caps


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    phase: str  # resolve, connect, greeting, ehlo, starttls, handshake, post_tls
    kind: str  # unreachable, timeout, protocol, tls
    message: str


@dataclass(frozen=True, slots=True)
class LocalProcess:
    """A process on this host (the far end of a redirected connection, or a known product's process)."""

    pid: int
    name: str
    exe: str
    product: str | None  # the known product whose process name this is


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """What the network showed, before any judgement."""

    target: Target
    address: str | None
    started_at: dt.datetime
    timings: Mapping[str, float]
    transcript: tuple[TranscriptLine, ...]
    starttls: StartTLS
    tls: TLSSession | None
    failure: ProbeFailure | None
    local_peer: LocalProcess | None = None  # the session ended at a process on this host


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    verdict: Verdict | None = None  # the verdict this finding implies, if any

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": str(self.severity), "message": self.message}


@dataclass(frozen=True, slots=True)
class CertInfo:
    position: int
    subject: str
    issuer: str
    subject_cn: str
    issuer_cn: str
    serial: str
    sha256: str
    spki_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    is_ca: bool
    self_signed: bool
    sct_count: int
    key: str  # "RSA-2048", "EC-secp256r1"
    signature_algorithm: str
    pem: str
    expected: bool = False  # part of the profile's trust (anchor, known intermediate, or validated path)


@dataclass(frozen=True, slots=True)
class Interceptor:
    product: str
    vendor: str
    kind: str
    trusted_locally: bool
    ca_subject: str
    ca_spki_sha256: str
    matched: str  # which pattern or signal named it
    ca_subject_cn: str = ""  # the CA's common name, for metric labels


@dataclass(frozen=True, slots=True)
class SCTCheck:
    log_id: str  # base64, as log lists spell it
    log: str  # the log's description, "" when the list does not know it
    operator: str
    state: str
    timestamp: dt.datetime
    valid: bool | None  # None: not verifiable here (unknown log, issuer not at hand, odd algorithm)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "log": self.log,
            "operator": self.operator,
            "state": self.state,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "valid": self.valid,
            "reason": self.reason,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> SCTCheck:
        return SCTCheck(
            str(d["log_id"]),
            str(d["log"]),
            str(d["operator"]),
            str(d["state"]),
            dt.datetime.fromisoformat(str(d["timestamp"]).replace("Z", "+00:00")),
            None if d.get("valid") is None else bool(d["valid"]),
            str(d.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class CTReport:
    """The leaf's SCTs as verified; `valid_operators` counts distinct operators with a valid SCT."""

    scts: tuple[SCTCheck, ...]
    valid_operators: int
    log_list: str = ""  # the list's version
    error: str = ""  # the SCT list itself could not be read

    @property
    def invalid(self) -> tuple[SCTCheck, ...]:
        return tuple(s for s in self.scts if s.valid is False)

    @property
    def valid(self) -> tuple[SCTCheck, ...]:
        return tuple(s for s in self.scts if s.valid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scts": [s.to_dict() for s in self.scts],
            "valid_operators": self.valid_operators,
            "log_list": self.log_list,
            "error": self.error,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> CTReport:
        return CTReport(
            tuple(SCTCheck.from_dict(s) for s in d.get("scts") or ()),
            int(d.get("valid_operators", 0)),
            str(d.get("log_list", "")),
            str(d.get("error", "")),
        )


@dataclass(frozen=True, slots=True)
class Analysis:
    profile: str
    profile_version: str
    at: dt.datetime
    verdict: Verdict
    findings: tuple[Finding, ...]
    chain: tuple[CertInfo, ...]
    validated_path: tuple[str, ...]  # subjects of the path built to an anchor, leaf first; empty if none
    trusted_locally: bool | None
    interceptor: Interceptor | None
    ct: CTReport | None = None  # the leaf's embedded SCTs as verified; None: no SCT list (or no leaf)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    record: ProbeRecord
    analysis: Analysis
    extra: Mapping[str, Any] = field(default_factory=dict)  # later stages (path, host) attach here

    @property
    def verdict(self) -> Verdict:
        return self.analysis.verdict

    def to_dict(self) -> dict[str, Any]:
        r, a = self.record, self.analysis
        tls = None
        if r.tls is not None:
            tls = {
                "version": r.tls.version,
                "cipher": r.tls.cipher,
                "group": r.tls.group,
                "signature_algorithm": r.tls.signature_algorithm,
                "chain_length": len(r.tls.chain_der),
                "chain_truncated": r.tls.chain_truncated,
            }
        out: dict[str, Any] = {
            "target": r.target.raw,
            "host": r.target.host,
            "port": r.target.port,
            "protocol": r.target.protocol,
            "starttls_required": r.target.starttls,
            "address": r.address,
            "started_at": _iso(r.started_at),
            "verdict": str(a.verdict),
            "findings": [f.to_dict() for f in a.findings],
            "starttls": {
                "state": str(r.starttls.state),
                "capabilities": list(r.starttls.capabilities),
                "capabilities_after_tls": list(r.starttls.capabilities_after_tls),
                "reply": r.starttls.reply,
            },
            "tls": tls,
            "chain": [_cert_dict(c) for c in a.chain],
            "validated_path": list(a.validated_path),
            "trusted_locally": a.trusted_locally,
            "interceptor": dataclasses.asdict(a.interceptor) if a.interceptor else None,
            "ct": a.ct.to_dict() if a.ct else None,
            "profile": {"name": a.profile, "version": a.profile_version},
            "failure": dataclasses.asdict(r.failure) if r.failure else None,
            "transcript": [{"dir": t.direction, "text": t.text, "t": round(t.at, 6)} for t in r.transcript],
            "timings": {k: round(v, 6) for k, v in r.timings.items()},
            "local_peer": dataclasses.asdict(r.local_peer) if r.local_peer else None,
        }
        if r.tls is not None and len(a.chain) < len(r.tls.chain_der):
            # certificates the analysis could not read: the raw evidence, never dropped
            out["presented_pem"] = [_pem(der) for der in r.tls.chain_der]
        out.update(self.extra)
        return out


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _cert_dict(c: CertInfo) -> dict[str, Any]:
    return {
        "position": c.position,
        "subject": c.subject,
        "issuer": c.issuer,
        "serial": c.serial,
        "sha256": c.sha256,
        "spki_sha256": c.spki_sha256,
        "not_before": _iso(c.not_before),
        "not_after": _iso(c.not_after),
        "dns_names": list(c.dns_names),
        "is_ca": c.is_ca,
        "self_signed": c.self_signed,
        "sct_count": c.sct_count,
        "key": c.key,
        "signature_algorithm": c.signature_algorithm,
        "expected": c.expected,
        "pem": c.pem,
    }
