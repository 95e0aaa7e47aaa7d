"""Findings from a ProbeRecord and a trust profile, and the one verdict they imply.

One mechanism: every finding may carry the verdict it implies; the most severe wins (Verdict's order),
and a probe with none is `ok`. Warnings never change the verdict, they explain it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from relaywatch.analysis import certs as certinfo
from relaywatch.analysis.chain import PathResult, PathStatus, validate
from relaywatch.analysis.interceptors import ca_spki, identify, identify_stripper, products
from relaywatch.analysis.profile import TrustProfile
from relaywatch.analysis.truststore import HostStore, host_store
from relaywatch.model import Analysis, Finding, Interceptor, ProbeRecord, Severity, StartTLSState, Verdict

CRIT, WARN, INFO = Severity.CRITICAL, Severity.WARNING, Severity.INFO


def analyze(
    record: ProbeRecord, profile: TrustProfile, at: dt.datetime | None = None, host: HostStore | None = None
) -> Analysis:
    """Total: evidence that breaks the analysis (a certificate no library can read) still gets a verdict."""
    at = at or record.started_at
    try:
        return _analyze(record, profile, at, host)
    except Exception as exc:
        finding = Finding(
            "analysis_failed",
            CRIT,
            f"the evidence could not be analysed ({type(exc).__name__}: "
            f"{exc}); it is kept in the transcript and chain",
            Verdict.PROTOCOL_ERROR,
        )
        return Analysis(
            profile.name, profile.version, at, Verdict.PROTOCOL_ERROR, (finding,), (), (), None, None
        )


def _analyze(record: ProbeRecord, profile: TrustProfile, at: dt.datetime, host: HostStore | None) -> Analysis:
    findings: list[Finding] = []
    findings += _failure(record)
    findings += _starttls(record, profile)
    chain = _parse_chain(record, findings)
    validated: tuple[str, ...] = ()
    trusted_locally: bool | None = None
    interceptor: Interceptor | None = None
    expected: set[str] = set()
    if record.tls is not None and record.tls.version and not profile.tls_version_ok(record.tls.version):
        findings.append(
            Finding(
                "tls_version_below_minimum",
                CRIT,
                f"negotiated {record.tls.version}, below the profile's minimum "
                f"TLS {profile.min_tls_version}: "
                "something on the path forces an old protocol, or the server is not the real relay",
                Verdict.TLS_DOWNGRADED,
            )
        )
    if chain:
        host = host or host_store()
        result = validate(
            chain,
            profile.store,
            at,
            record.target.host,
            profile.names,
            profile.intermediates,
            anchors=profile.anchors,
        )
        trusted_locally = _trusted_locally(chain, host, at, record.target.host)
        findings += _chain_findings(result, chain, profile, host, at)
        validated = tuple(c.subject.rfc4514_string() for c in result.path)
        expected = {certinfo.fingerprint(c) for c in result.path}
        if result.status is PathStatus.UNTRUSTED:
            interceptor, more = _interceptor(chain, trusted_locally, at)
            findings += more
    stripper = _stripper(record)
    if stripper is not None and interceptor is None:
        interceptor = stripper
    more, interceptor = _local_peer(record, interceptor)
    findings += more
    infos = tuple(
        certinfo.describe(
            c, i, certinfo.fingerprint(c) in expected or certinfo.fingerprint(c) in profile.known
        )
        for i, c in enumerate(chain)
    )
    verdicts = [f.verdict for f in findings if f.verdict is not None]
    verdict = min(verdicts, key=lambda v: v.severity_rank) if verdicts else Verdict.OK
    order = {CRIT: 0, WARN: 1, INFO: 2}
    findings.sort(key=lambda f: (f.verdict.severity_rank if f.verdict else 99, order[f.severity]))
    return Analysis(
        profile.name,
        profile.version,
        at,
        verdict,
        tuple(findings),
        infos,
        validated,
        trusted_locally,
        interceptor,
    )


def _local_peer(
    record: ProbeRecord, interceptor: Interceptor | None
) -> tuple[list[Finding], Interceptor | None]:
    """A session to a remote relay that ends at a process on this host was redirected to local software."""
    peer = record.local_peer
    if peer is None or record.address is None or ipaddress.ip_address(record.address).is_loopback:
        return [], interceptor
    product = next((p for p in products() if p.product == peer.product), None)
    named = f" ({product.product})" if product else ""
    found = [
        Finding(
            "session_ends_on_this_host",
            CRIT if interceptor else WARN,
            f"the connection to {record.address} ends at process {peer.name!r} (pid {peer.pid}, "
            f"{peer.exe or 'executable unknown'}){named} on this host: a local proxy or a redirect",
        )
    ]
    if interceptor is not None and interceptor.product == "unknown" and product is not None:
        interceptor = dataclasses.replace(
            interceptor,
            product=product.product,
            vendor=product.vendor,
            kind=product.kind,
            matched=f"process {peer.name} (pid {peer.pid})",
        )
    return found, interceptor


def _failure(record: ProbeRecord) -> list[Finding]:
    f = record.failure
    if f is None:
        return []
    if f.kind == "unreachable":
        return [
            Finding(
                f"{f.phase}_failed",
                CRIT,
                f"{f.message}: check DNS, routing and firewall rules",
                Verdict.UNREACHABLE,
            )
        ]
    if f.phase == "post_tls":
        return [Finding("post_tls_dialogue_failed", WARN, f"after TLS: {f.message}")]
    if f.kind == "tls" and "inappropriate fallback" in f.message.lower():
        return [
            Finding(
                "tls_downgrade_detected",
                CRIT,
                f"{f.message}: the server signalled that a newer TLS version was removed on the way",
                Verdict.TLS_DOWNGRADED,
            )
        ]
    hint = {
        "timeout": "the server or a middlebox stalls the session",
        "tls": "the TLS handshake did not complete: a middlebox may block or break TLS",
    }.get(f.kind, "the peer does not speak the protocol as a mail relay would")
    return [
        Finding(
            f"{f.phase}_{'timeout' if f.kind == 'timeout' else 'failed'}",
            CRIT,
            f"{f.phase}: {f.message} ({hint})",
            Verdict.PROTOCOL_ERROR,
        )
    ]


def _starttls(record: ProbeRecord, profile: TrustProfile) -> list[Finding]:
    s = record.starttls
    if s.state in (StartTLSState.OFFERED, StartTLSState.NOT_APPLICABLE, StartTLSState.UNKNOWN):
        return []
    verdict = Verdict.STARTTLS_STRIPPED if profile.require_starttls else None
    severity = CRIT if profile.require_starttls else WARN
    what = {
        StartTLSState.MISSING: "the server's capabilities do not offer STARTTLS",
        StartTLSState.MASKED: "the STARTTLS capability was overwritten with filler on the way",
        StartTLSState.REJECTED: f"STARTTLS was offered but refused: {s.reply}",
    }[s.state]
    if s.state is not StartTLSState.REJECTED and s.reply:
        what += f"; STARTTLS answered {s.reply!r}"
    stripper = identify_stripper(s.capabilities, s.reply)
    if stripper:
        what += f" (signature of {stripper.product})"
    return [
        Finding(
            f"starttls_{s.state}",
            severity,
            f"{what}: mail would travel in clear text; check firewall ESMTP inspection "
            "(e.g. Cisco ASA 'no allow-tls') and antivirus mail shields",
            verdict,
        )
    ]


def _stripper(record: ProbeRecord) -> Interceptor | None:
    s = record.starttls
    if s.state not in (StartTLSState.MASKED, StartTLSState.MISSING, StartTLSState.REJECTED):
        return None
    product = identify_stripper(s.capabilities, s.reply)
    if product is None:
        return None
    return Interceptor(
        product.product, product.vendor, product.kind, False, "", "", "STARTTLS stripping signature"
    )


def _parse_chain(record: ProbeRecord, findings: list[Finding]) -> list[x509.Certificate]:
    if record.tls is None:
        return []
    chain = []
    for i, der in enumerate(record.tls.chain_der):
        try:
            chain.append(certinfo.from_der(der))
        except ValueError as exc:
            findings.append(
                Finding("certificate_unparsable", WARN, f"certificate {i} cannot be parsed: {exc}")
            )
            break
    if record.tls.chain_truncated:
        findings.append(
            Finding(
                "chain_truncated",
                WARN,
                f"{record.tls.chain_truncated} certificates beyond the caps were not kept",
            )
        )
    if not chain:
        findings.append(
            Finding("no_certificate", CRIT, "the server presented no usable certificate", Verdict.INTERCEPTED)
        )
    return chain


def _chain_findings(
    result: PathResult,
    chain: Sequence[x509.Certificate],
    profile: TrustProfile,
    host: HostStore,
    at: dt.datetime,
) -> list[Finding]:
    s = result.status
    if s is PathStatus.UNTRUSTED:
        return [
            Finding(
                "chain_not_anchored",
                CRIT,
                f"the chain does not lead to the {profile.name} profile's roots ({result.error}): "
                "something between this host and the relay re-signs the session",
                Verdict.INTERCEPTED,
            )
        ]
    if s in (
        PathStatus.EXPIRED,
        PathStatus.NOT_YET_VALID,
        PathStatus.CHAIN_EXPIRED,
        PathStatus.NAME_MISMATCH,
    ):
        hint = (
            "check this host's clock, then whether the relay serves a stale certificate"
            if s is not PathStatus.NAME_MISMATCH
            else "check the target name and the profile's names"
        )
        return [Finding(f"certificate_{s}", CRIT, f"{result.error}: {hint}", Verdict.CERTIFICATE_INVALID)]
    out: list[Finding] = []
    if result.completed_from:
        names = ", ".join(certinfo.common_name(c.subject) for c in result.completed_from)
        out.append(
            Finding(
                "chain_incomplete",
                WARN,
                f"the server did not send {names}; the chain completes with the profile's own "
                "intermediates, so this is a chain problem at the relay, not interception",
            )
        )
    root = result.path[-1] if result.path else None
    if root is not None and not host.contains(root):
        out.append(
            Finding(
                "anchor_not_trusted_locally",
                WARN,
                f"this host's trust store ({host.source}) lacks {certinfo.common_name(root.subject)}: "
                "local mail clients may fail to validate the relay; update the CA bundle",
            )
        )
    return out


def _trusted_locally(chain: Sequence[x509.Certificate], host: HostStore, at: dt.datetime, name: str) -> bool:
    if host.store is None:
        return False
    r = validate(
        chain, host.store, at, name, (), (), permissive=True, explain=False, anchors=host.certificates
    )
    return r.status in (PathStatus.VALID, PathStatus.NAME_MISMATCH)


def _interceptor(
    chain: Sequence[x509.Certificate], trusted: bool | None, at: dt.datetime
) -> tuple[Interceptor, list[Finding]]:
    m = identify(chain)
    found: list[Finding] = []
    if m.product is not None:
        interceptor = Interceptor(
            m.product.product,
            m.product.vendor,
            m.product.kind,
            bool(trusted),
            m.ca_subject,
            ca_spki(m),
            m.matched,
            m.ca_cn,
        )
        found.append(
            Finding(
                "interceptor_identified",
                CRIT,
                f"the chain names {m.product.product} ({m.product.kind}, {m.product.vendor}): "
                f"turn off its TLS/mail scanning for this relay, or exclude the relay's host",
            )
        )
    else:
        interceptor = Interceptor(
            "unknown", "unknown", "unknown", bool(trusted), m.ca_subject, ca_spki(m), m.matched, m.ca_cn
        )
        found.append(
            Finding(
                "interceptor_unknown",
                CRIT,
                f"re-signed by {m.ca_subject!r}, which no known product pattern names: "
                "find the firewall, proxy or security software that owns this CA",
            )
        )
    if trusted:
        found.append(
            Finding(
                "interception_trusted_locally",
                CRIT,
                "this host trusts the interception CA, so local mail clients accept the forged "
                "certificate silently: it was installed by security software or pushed by policy",
            )
        )
    leaf = chain[0]
    if certinfo.sct_count(leaf) == 0:
        found.append(
            Finding(
                "leaf_without_sct",
                INFO,
                "the leaf carries no Certificate Transparency SCTs (Microsoft's real leaves do)",
            )
        )
    age = at - leaf.not_valid_before_utc
    if dt.timedelta(0) <= age < dt.timedelta(days=3):
        found.append(
            Finding(
                "leaf_freshly_issued",
                INFO,
                f"the leaf became valid {age.total_seconds() / 3600:.0f} h before the probe, "
                "typical of certificates forged on the fly",
            )
        )
    return interceptor, found
