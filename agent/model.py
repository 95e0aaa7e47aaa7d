"""Typed, frozen results passed along the pipeline; JSON is derived from them, never built by hand."""

from __future__ import annotations

import base64
import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relaywatch.host.model import HostReport, LocalProcess
from relaywatch.path.model import PathResult
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
    chain_der: tuple[bytes, ...]  # as presented, leaf first, capped
    chain_truncated: int = 0  # certificates dropped by the chain-length / size caps


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    phase: str  # a Phase (probe/limits.py): resolve, connect, greeting, capabilities, ...
    kind: str  # unreachable, timeout, protocol, tls
    message: str


@dataclass(frozen=True, slots=True)
class DNSAnswer:
    """One lookup through the configured resolver, as it answered (attacker-controlled: counts and sizes are
    capped in probe/dns.py). status: ok, nxdomain (no such name), bogus (validation failed: SERVFAIL that
    checking-disabled answers), timeout, error, malformed (a message or rdata that does not parse)."""

    name: str
    rdtype: str
    status: str
    secure: bool  # the AD bit: the resolver validated the answer (or the denial)
    records: tuple[str, ...] = ()  # rdata in presentation form
    message: str = ""
    cname: str = ""  # the fully CNAME-expanded name when the answer followed CNAMEs (RFC 7672 §2.2.3)


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """The MTA-STS policy as fetched over HTTPS. status: fetched, untrusted (the certificate did not
    validate: interception or a misconfigured policy host), failed, timeout, too_large, skipped."""

    url: str
    status: str
    text: str = ""  # the body, at most 64 KiB
    message: str = ""


@dataclass(frozen=True, slots=True)
class GatewayDNS:
    """What DNS said about a gateway host (port 25): its addresses, its TLSA records and, for mx:
    targets, the domain's MX and MTA-STS evidence. Raw evidence; analysis/dane.py and mta_sts.py judge."""

    host: str  # the MX host: the TLSA base name and the name its certificate must carry
    addresses: DNSAnswer | None  # None: from RELAYWATCH_HOSTS_FILE, never secure
    tlsa: DNSAnswer | None = None  # None: not looked up (addresses insecure, or DNSSEC off)
    domain: str = ""  # mx: targets
    mx: DNSAnswer | None = None
    mta_sts_txt: DNSAnswer | None = None
    policy: PolicyFetch | None = None
    note: str = ""  # why a lookup did not happen


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
    dns: GatewayDNS | None = None  # gateway hosts (port 25): DNS, DNSSEC, TLSA and MTA-STS evidence


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    verdict: Verdict | None = None  # the verdict this finding implies, if any


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


class DaneStatus(enum.StrEnum):
    """The DANE state of a gateway address (relaywatch_dane_status): one place for the set."""

    VERIFIED = "verified"  # a secure TLSA record matches the presented chain
    MISMATCH = "mismatch"  # secure, usable TLSA records, none matches: interception
    BOGUS = "bogus"  # DNSSEC validation failed for the addresses or the TLSA records
    UNAVAILABLE = "unavailable"  # insecure, no records, none usable, or no lookup possible


@dataclass(frozen=True, slots=True)
class TLSAResult:
    usage: int
    selector: int
    matching: int
    data: str  # hex, lower case
    matched_position: int | None = None  # the chain position it matched; None: none
    usable: bool = True  # usages 0/1, unknown selectors or matching types, wrong digest lengths: False
    note: str = ""


@dataclass(frozen=True, slots=True)
class DaneResult:
    status: DaneStatus
    records: tuple[TLSAResult, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MtaStsResult:
    """The domain's MTA-STS policy as parsed (RFC 8461) and this MX host judged against it."""

    domain: str
    mode: str  # enforce, testing, none; "" when there is no valid policy
    id: str  # the TXT record's id
    mx: tuple[str, ...] = ()
    max_age: int | None = None
    matched: bool | None = None  # the MX host matches one of the policy's mx patterns; None: no policy
    reason: str = ""


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
    dane: DaneResult | None = None  # gateway hosts: TLSA records matched against the chain
    mta_sts: MtaStsResult | None = None  # mx: targets: the domain's MTA-STS policy


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe of one address, judged; with the path trace and host inspection when they ran.

    `to_dict` is the public JSON (`check --json`, the evidence log, `/probe?format=json`), derived from
    the models; `from_dict` reads it back to the same value. The worker sends results to the agent with
    `codec.py`, which decodes them against these types (no pickle: the worker parses hostile input).
    """

    record: ProbeRecord
    analysis: Analysis
    path: PathResult | None = None
    host: HostReport | None = None

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
                "chain_length": len(r.tls.chain_der),
                "chain_truncated": r.tls.chain_truncated,
            }
        out: dict[str, Any] = {
            "target": r.target.raw,
            "scheme": r.target.scheme,
            "host": r.target.host,
            "port": r.target.port,
            "protocol": r.target.protocol,
            "starttls_required": r.target.starttls,
            "address": r.address,
            "started_at": _iso(r.started_at),
            "verdict": str(a.verdict),
            "findings": _builtins(a.findings),
            "starttls": _builtins(r.starttls),
            "tls": tls,
            "chain": _builtins(a.chain),
            "validated_path": list(a.validated_path),
            "trusted_locally": a.trusted_locally,
            "interceptor": _builtins(a.interceptor),
            "ct": _builtins(a.ct),
            "dane": _builtins(a.dane),
            "mta_sts": _builtins(a.mta_sts),
            "dns": _builtins(r.dns),
            "profile": {"name": a.profile, "version": a.profile_version},
            "analysed_at": _iso(a.at),
            "failure": _builtins(r.failure),
            "transcript": [{"dir": t.direction, "text": t.text, "t": t.at} for t in r.transcript],
            "timings": {str(k): v for k, v in r.timings.items()},
            "local_peer": _builtins(r.local_peer),
            "path": _builtins(self.path),
            "host_inspection": _builtins(self.host),  # "host" is the target's host name
        }
        if r.tls is not None and not _chain_is_presented(a.chain, r.tls.chain_der):
            # certificates the analysis could not read (or did not keep): the raw evidence, never dropped
            out["presented_pem"] = [_pem(der) for der in r.tls.chain_der]
        return out

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ProbeResult:
        """The inverse of to_dict; raises ValueError on anything that is not such a document."""
        from relaywatch.codec import convert

        try:
            target = Target(d["target"], d["scheme"], d["host"], d["port"])
            chain = tuple(convert(c, CertInfo) for c in d["chain"])
            tls = None
            if d["tls"] is not None:
                pems = d.get("presented_pem") or [c.pem for c in chain]
                t = d["tls"]
                tls = TLSSession(
                    t["version"], t["cipher"], t["group"], tuple(_der(p) for p in pems), t["chain_truncated"]
                )
            record = ProbeRecord(
                target,
                d["address"],
                _time(d["started_at"]),
                {k: float(v) for k, v in d["timings"].items()},
                tuple(TranscriptLine(t["dir"], t["text"], float(t["t"])) for t in d["transcript"]),
                convert(d["starttls"], StartTLS),
                tls,
                convert(d["failure"], ProbeFailure | None),
                convert(d["local_peer"], LocalProcess | None),
                convert(d.get("dns"), GatewayDNS | None),
            )
            analysis = Analysis(
                d["profile"]["name"],
                d["profile"]["version"],
                _time(d["analysed_at"]),
                Verdict.of(d["verdict"]),
                tuple(convert(f, Finding) for f in d["findings"]),
                chain,
                tuple(d["validated_path"]),
                d["trusted_locally"],
                convert(d["interceptor"], Interceptor | None),
                convert(d.get("ct"), CTReport | None),
                convert(d.get("dane"), DaneResult | None),
                convert(d.get("mta_sts"), MtaStsResult | None),
            )
            return ProbeResult(
                record,
                analysis,
                convert(d.get("path"), PathResult | None),
                convert(d.get("host_inspection"), HostReport | None),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a probe result: {type(exc).__name__}: {exc}") from None


def _builtins(value: object) -> Any:
    from relaywatch.codec import to_builtins

    return to_builtins(value)


def _chain_is_presented(chain: tuple[CertInfo, ...], ders: tuple[bytes, ...]) -> bool:
    """True when the analysed chain is the presented one, certificate by certificate: the bytes of each
    analysed certificate's PEM against the presented DER (no hashing, so no hashlib and no system
    libcrypto in the agent's main process, which writes events with this)."""
    if len(chain) != len(ders):
        return False
    try:
        return all(_der(c.pem) == der for c, der in zip(chain, ders, strict=True))
    except ValueError:  # a PEM the analysis did not write: keep the raw evidence
        return False


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def _der(pem: str) -> bytes:
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return base64.b64decode(body, validate=True)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
