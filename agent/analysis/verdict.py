"""Findings from a ProbeRecord and a trust profile, and the one verdict they imply.

One mechanism: every finding may carry the verdict it implies; the most severe wins (Verdict's order),
and a probe with none is `ok`. Warnings never change the verdict, they explain it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from relaywatch.analysis import certs as certinfo
from relaywatch.analysis import dane as dane_match
from relaywatch.analysis import mta_sts as sts
from relaywatch.analysis.chain import PathResult, PathStatus, validate
from relaywatch.analysis.ct import check_leaf
from relaywatch.analysis.interceptors import Match, ca_spki, identify, identify_stripper, products
from relaywatch.analysis.membership import issuer_of, membership
from relaywatch.analysis.profile import TrustProfile
from relaywatch.analysis.session import auth_exposure, tls_parameters
from relaywatch.analysis.truststore import HostStore, host_store
from relaywatch.model import (
    Analysis,
    CTReport,
    DaneResult,
    DaneStatus,
    DNSAnswer,
    Finding,
    GatewayDNS,
    Interceptor,
    MtaStsResult,
    ProbeRecord,
    Severity,
    StartTLSState,
    Verdict,
)

CRIT, WARN, INFO = Severity.CRITICAL, Severity.WARNING, Severity.INFO


def analyze(
    record: ProbeRecord, profile: TrustProfile, at: dt.datetime | None = None, host: HostStore | None = None
) -> Analysis:
    """Total: evidence that breaks the analysis (a certificate no library can read) still gets a verdict."""
    at = at or record.started_at
    try:
        return _analyze(record, profile, at, host)
    except Exception as exc:
        return _fail_closed(record, profile, at, f"{type(exc).__name__}: {str(exc)[:200]}")


def _fail_closed(record: ProbeRecord, profile: TrustProfile, at: dt.datetime, why: str) -> Analysis:
    """Fail closed: a chain that breaks the analysis is an interceptor's unless it is provably the
    operator's (a path by signature to the profile's anchors); only then is it our problem, not theirs."""
    verdict, whose = Verdict.INTERCEPTED, "it does not lead to the profile's anchors by signature"
    try:
        chain = [certinfo.from_der(d) for d in (record.tls.chain_der if record.tls else ())]
        if not chain:
            verdict, whose = Verdict.PROTOCOL_ERROR, "no certificate was presented"
        elif membership(chain, profile.pool).member:
            verdict, whose = Verdict.PROTOCOL_ERROR, "it is the profile's own chain"
    except Exception:  # not even readable: a forged chain is as likely as anything
        pass
    finding = Finding(
        "analysis_failed",
        CRIT,
        f"the evidence could not be analysed ({why}); {whose}: the raw chain and the transcript are kept",
        verdict,
    )
    return Analysis(profile.name, profile.version, at, verdict, (finding,), (), (), None, None)


@dataclass(frozen=True, slots=True)
class _Chain:
    """What the chain judgement hands back to the assembly of the Analysis."""

    findings: tuple[Finding, ...] = ()
    validated: tuple[str, ...] = ()
    expected: frozenset[str] = frozenset()  # fingerprints on a path to the profile's anchors
    trusted_locally: bool | None = None
    interceptor: Interceptor | None = None
    ct: CTReport | None = None


def _analyze(record: ProbeRecord, profile: TrustProfile, at: dt.datetime, host: HostStore | None) -> Analysis:
    findings: list[Finding] = [
        *_failure(record),
        *_starttls(record, profile),
        *tls_parameters(record, profile),
        *auth_exposure(record, profile),
    ]
    chain = _parse_chain(record, findings)
    judged = _judge_chain(record, chain, profile, at, host) if chain else _Chain()
    findings += judged.findings
    interceptor = judged.interceptor
    stripper = _stripper(record)
    if stripper is not None and interceptor is None:
        interceptor = stripper
    more, interceptor = _local_peer(record, interceptor)
    findings += more
    dane, mta_sts, more = _gateway(record, chain, profile, at)
    findings += more
    findings = _unexpected_issuer_needs_a_trusted_name(findings, record, mta_sts)
    if dane is not None and dane.status is DaneStatus.VERIFIED:
        findings, interceptor = _dane_overrules(findings), None
    infos = tuple(
        certinfo.describe(c, i, certinfo.fingerprint(c) in judged.expected or profile.is_known(c))
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
        judged.validated,
        judged.trusted_locally,
        interceptor,
        judged.ct,
        dane,
        mta_sts,
    )


def _unexpected_issuer_needs_a_trusted_name(
    findings: list[Finding], record: ProbeRecord, mta_sts: MtaStsResult | None
) -> list[Finding]:
    """A public certificate proves something only for a name the user chose or DNSSEC (or an enforced
    MTA-STS policy) vouches for: for an mx: target whose MX answer is neither, an attacker who spoofed the
    MX record could present a genuine public certificate of a host of its own."""
    if record.target.scheme != "mx" or not any(f.verdict is Verdict.UNEXPECTED_ISSUER for f in findings):
        return findings
    mx = record.dns.mx if record.dns else None
    vouched = (mx is not None and mx.secure) or (
        mta_sts is not None and mta_sts.mode == "enforce" and mta_sts.matched is True
    )
    if vouched:
        return findings
    why = (
        "; but the MX host name comes from a DNS answer neither DNSSEC nor an enforced MTA-STS policy "
        "vouches for, so a certificate that is valid for it proves nothing: judged as interception"
    )
    return [
        Finding(f.code, CRIT, f.message + why, Verdict.INTERCEPTED)
        if f.verdict is Verdict.UNEXPECTED_ISSUER
        else f
        for f in findings
    ]


# --------------------------------------------------------------------------- gateway hosts: DANE, MTA-STS


def _gateway(
    record: ProbeRecord, chain: Sequence[x509.Certificate], profile: TrustProfile, at: dt.datetime
) -> tuple[DaneResult | None, MtaStsResult | None, list[Finding]]:
    """DANE (RFC 7672) and MTA-STS (RFC 8461): evidence that needs no trust profile."""
    ev = record.dns
    if ev is None:
        return None, None, []
    result = dane_match.judge(ev, chain)
    findings = _dane_findings(ev, result, record)
    mta: MtaStsResult | None = None
    if ev.domain:
        mta, more = _mta_sts(ev, chain, profile, at)
        findings += more
    return result, mta, findings


def _dane_findings(ev: GatewayDNS, result: DaneResult, record: ProbeRecord) -> list[Finding]:
    out = [
        Finding(
            "tlsa_malformed" if a.rdtype == "TLSA" and a.status == "malformed" else "dns_lookup_failed",
            WARN,
            f"{a.name} {a.rdtype}: {a.status}: {a.message}",
        )
        for a in (ev.addresses, ev.tlsa)
        if a is not None and a.status in ("timeout", "error", "malformed")
    ]
    out += [
        Finding("tlsa_unusable", WARN, f"TLSA {r.usage} {r.selector} {r.matching}: {r.note}")
        for r in result.records
        if not r.usable
    ]
    if result.status is DaneStatus.VERIFIED:
        hit = next(r for r in result.records if r.matched_position is not None)
        kind = "DANE-EE" if hit.usage == dane_match.DANE_EE else "DANE-TA"
        out.append(
            Finding(
                "dane_verified",
                INFO,
                f"TLSA {hit.usage} {hit.selector} {hit.matching} ({kind}, DNSSEC-signed) matches certificate "
                f"{hit.matched_position}: the relay's own key, whatever any CA says",
            )
        )
    elif result.status is DaneStatus.MISMATCH:
        out.append(
            Finding(
                "dane_mismatch",
                CRIT,
                f"the DNSSEC-signed TLSA records of {ev.host} match no certificate of the chain "
                f"({result.reason}): the session is re-signed on the way, whatever the trust profile says",
                Verdict.INTERCEPTED,
            )
        )
    elif result.status is DaneStatus.BOGUS:
        out.append(
            Finding(
                "dnssec_bogus",
                CRIT,
                f"DNSSEC validation failed ({result.reason}): the DNS answers were forged or the zone is "
                "broken; a DANE-aware sender defers mail to this host",
            )
        )
    else:
        out.append(Finding("dane_unavailable", INFO, f"no DANE for {ev.host}: {result.reason}"))
    out += _dane_starttls(ev, result, record)
    return out


def _dane_starttls(ev: GatewayDNS, result: DaneResult, record: ProbeRecord) -> list[Finding]:
    """Secure, usable TLSA records make STARTTLS mandatory (RFC 7672 §2.2)."""
    out: list[Finding] = []
    secure = ev.tlsa is not None and ev.tlsa.secure and any(r.usable for r in result.records)
    state = record.starttls.state
    if secure and state in (StartTLSState.MISSING, StartTLSState.MASKED, StartTLSState.REJECTED):
        out.append(
            Finding(
                "dane_starttls_missing",
                CRIT,
                f"{ev.host} publishes DNSSEC-signed TLSA records, so STARTTLS is mandatory, yet it is "
                f"{state} here: something on the path strips it",
                Verdict.STARTTLS_STRIPPED,
            )
        )
    if ev.addresses is not None and not ev.addresses.secure and not _failed(ev.addresses):
        out.append(_insecure(ev.addresses))
    return out


def _failed(a: DNSAnswer) -> bool:
    return a.status in ("bogus", "timeout", "error", "malformed")


def _insecure(a: DNSAnswer) -> Finding:
    return Finding(
        "dnssec_insecure", INFO, f"{a.name} {a.rdtype}: the answer is not DNSSEC-secure (no AD bit)"
    )


def _dane_overrules(findings: list[Finding]) -> list[Finding]:
    """A DANE match on the operator's key is not interception: the profile's view stays, as a warning."""
    return [
        dataclasses.replace(
            f,
            severity=WARN,
            verdict=None,
            message=f"{f.message}; but DANE verifies this chain (the operator's own key): not interception",
        )
        if f.verdict is Verdict.INTERCEPTED
        else f
        for f in findings
    ]


def _mta_sts(
    ev: GatewayDNS, chain: Sequence[x509.Certificate], profile: TrustProfile, at: dt.datetime
) -> tuple[MtaStsResult, list[Finding]]:
    txt, fetched = ev.mta_sts_txt, ev.policy
    if txt is None or txt.status != "ok" or not txt.records:
        why = "no _mta-sts TXT record" if txt is None or txt.status in ("ok", "nxdomain") else txt.message
        return MtaStsResult(ev.domain, "", "", reason=why), [
            Finding("mta_sts_unavailable", INFO, f"{ev.domain}: {why}")
        ]
    try:
        policy_id = sts.parse_txt(txt.records)
    except sts.PolicyError as exc:
        return MtaStsResult(ev.domain, "", "", reason=str(exc)), [Finding("mta_sts_invalid", WARN, str(exc))]
    if fetched is None or fetched.status != "fetched":
        status = fetched.status if fetched else "skipped"
        why = f"{fetched.url}: {fetched.message}" if fetched else "not fetched"
        severity = CRIT if status == "untrusted" else WARN
        code = "mta_sts_policy_untrusted" if status == "untrusted" else "mta_sts_policy_unavailable"
        extra = (
            ": the policy fetch is intercepted, or the policy host is misconfigured"
            if status == "untrusted"
            else ""
        )
        return MtaStsResult(ev.domain, "", policy_id, reason=why), [Finding(code, severity, why + extra)]
    try:
        policy = sts.parse_policy(fetched.text)
    except sts.PolicyError as exc:
        return MtaStsResult(ev.domain, "", policy_id, reason=str(exc)), [
            Finding("mta_sts_invalid", WARN, f"{fetched.url}: {exc}")
        ]
    matched = sts.mx_matches(ev.host, policy.mx)
    result = MtaStsResult(ev.domain, policy.mode, policy_id, policy.mx, policy.max_age, matched)
    return result, _mta_sts_findings(ev, policy, matched, chain, profile, at)


def _mta_sts_findings(
    ev: GatewayDNS,
    policy: sts.Policy,
    matched: bool,
    chain: Sequence[x509.Certificate],
    profile: TrustProfile,
    at: dt.datetime,
) -> list[Finding]:
    enforce = policy.mode == "enforce"
    if policy.mode == "none":
        return [Finding("mta_sts_policy", INFO, f"{ev.domain}: MTA-STS mode none")]
    out = [
        Finding("mta_sts_policy", INFO, f"{ev.domain}: MTA-STS mode {policy.mode}, mx {', '.join(policy.mx)}")
    ]
    if not matched:
        out.append(
            Finding(
                "mta_sts_mx_mismatch",
                CRIT if enforce else WARN,
                f"MX host {ev.host} matches none of the policy's mx patterns ({', '.join(policy.mx)}): "
                + (
                    "senders refuse to deliver to it"
                    if enforce
                    else "in enforce mode senders would refuse it"
                ),
            )
        )
    if enforce and chain and not _publicly_valid(chain, profile, at, ev.host):
        out.append(
            Finding(
                "mta_sts_certificate_invalid",
                CRIT,
                f"the policy is enforce, but the chain does not validate publicly for {ev.host}: "
                "MTA-STS senders refuse this session",
            )
        )
    return out


def _judge_chain(
    record: ProbeRecord,
    chain: Sequence[x509.Certificate],
    profile: TrustProfile,
    at: dt.datetime,
    host: HostStore | None,
) -> _Chain:
    """Membership by signatures decides whose chain it is; the verifier then decides whether it is valid."""
    host = host or host_store()
    name = record.target.host
    members = membership(chain, profile.pool)
    result = validate(
        chain, profile.store, at, name, profile.names, profile.intermediates, anchors=profile.anchors
    )
    trusted_locally = _trusted_locally(chain, host, at, name)
    issuer = _leaf_issuer(tuple(chain), profile)
    ct = check_leaf(chain[0], issuer, profile.ct_logs)
    anchored = result.status is not PathStatus.UNTRUSTED or members.member
    findings = ct_findings(ct, anchored)
    interceptor = None
    if result.status is not PathStatus.UNTRUSTED:
        findings += _chain_findings(result, chain, profile, host, at)
    elif members.member:
        findings += _member_rejected(result, members.paths[0], at)
    else:
        more, interceptor = _foreign(record, chain, profile, at, ct, trusted_locally)
        findings += more
        if members.finding is not None:  # the search was cut: fail closed, and say so
            findings.append(members.finding)
    return _Chain(
        tuple(findings),
        tuple(
            certinfo.subject_string(c) for c in (result.path or (members.paths[0] if members.paths else ()))
        ),
        frozenset(certinfo.fingerprint(c) for c in result.path) | members.fingerprints,
        trusted_locally,
        interceptor,
        ct,
    )


@functools.lru_cache(maxsize=512)
def _leaf_issuer(chain: tuple[x509.Certificate, ...], profile: TrustProfile) -> x509.Certificate | None:
    """The certificate whose key signed the leaf (its SPKI hash is part of what the SCTs sign): presented,
    or the profile's. Cached per chain and profile (a profile hashes by identity)."""
    return issuer_of(chain[0], (*chain[1:], *profile.intermediates, *profile.anchors))


def _member_rejected(result: PathResult, path: Sequence[x509.Certificate], at: dt.datetime) -> list[Finding]:
    """The operator's CAs signed this chain, yet the verifier refuses it: say exactly why. Validity
    periods that do not nest (a leaf valid only before its issuer was) leave no instant at which the whole
    chain is valid; that is an invalid certificate, not interception."""
    hint = "check this host's clock, then whether the relay serves a stale certificate"
    leaf = path[0]
    if at > leaf.not_valid_after_utc:
        why, code = f"leaf expired {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", "certificate_expired"
    elif at < leaf.not_valid_before_utc:
        why = f"leaf not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        code = "certificate_not_yet_valid"
    else:
        stale = next((c for c in path[1:] if not c.not_valid_before_utc <= at <= c.not_valid_after_utc), None)
        if stale is not None:
            why = (
                f"{certinfo.rfc4514(stale.subject)} is not valid now "
                f"({stale.not_valid_before_utc:%Y-%m-%d} to {stale.not_valid_after_utc:%Y-%m-%d} UTC)"
            )
            code = "certificate_chain_expired"
        else:
            why, code = f"the verifier refuses the chain: {result.error}", "certificate_rejected"
            hint = "the relay's certificate breaks path rules (extensions, name constraints, path length)"
    nested = _nesting(path)
    if nested:
        why += f"; {nested}"
    return [
        Finding(
            code,
            CRIT,
            f"{why} (the chain is signed by the profile's own CAs: not interception): {hint}",
            Verdict.CERTIFICATE_INVALID,
        )
    ]


def _nesting(path: Sequence[x509.Certificate]) -> str:
    for cert, issuer in itertools.pairwise(path):
        if cert.not_valid_after_utc < issuer.not_valid_before_utc:
            return (
                f"{certinfo.common_name(cert.subject)} expired before its issuer "
                f"{certinfo.common_name(issuer.subject)} became valid"
            )
    return ""


def _foreign(
    record: ProbeRecord,
    chain: Sequence[x509.Certificate],
    profile: TrustProfile,
    at: dt.datetime,
    ct: CTReport | None,
    trusted_locally: bool | None,
) -> tuple[list[Finding], Interceptor | None]:
    """Not the operator's chain. Publicly trusted for this name and logged by two operators: a CA change
    (or a mis-issuance), not an interceptor; anything less: interception."""
    public = _publicly_valid(chain, profile, at, record.target.host)
    logged = ct is not None and ct.valid_operators >= 2 and not ct.invalid
    if public and logged and ct is not None:
        issuer = certinfo.rfc4514(chain[0].issuer)
        logs = ", ".join(sorted({s.log for s in ct.valid}))
        text = (
            f"the chain does not lead to the {profile.name} profile's roots, but it is publicly trusted for "
            f"{record.target.host} (issued by {issuer!r}) and logged by {ct.valid_operators} CT operators "
            f"({logs}): the relay operator may have changed CAs (update the profile), or a public CA "
            "mis-issued"
        )
        if not profile.strict_unexpected_issuer:
            return [Finding("unexpected_issuer", WARN, text, Verdict.UNEXPECTED_ISSUER)], None
        strict = Finding("unexpected_issuer", CRIT, text + "; the profile treats this as interception")
        interceptor, found = _interceptor(chain, trusted_locally, at, profile)
        return [strict, *_not_anchored(profile, "publicly trusted and CT-logged"), *found], interceptor
    interceptor, found = _interceptor(chain, trusted_locally, at, profile)
    if public:
        found.append(
            Finding(
                "publicly_trusted_without_ct",
                INFO,
                "the chain validates against the public roots, but lacks valid SCTs from two CT operators",
            )
        )
    return [*_not_anchored(profile, "no path by signature"), *found], interceptor


def _not_anchored(profile: TrustProfile, why: str) -> list[Finding]:
    return [
        Finding(
            "chain_not_anchored",
            CRIT,
            f"the chain does not lead to the {profile.name} profile's roots ({why}): "
            "something between this host and the relay re-signs the session",
            Verdict.INTERCEPTED,
        )
    ]


def _publicly_valid(
    chain: Sequence[x509.Certificate], profile: TrustProfile, at: dt.datetime, name: str
) -> bool:
    roots = profile.public_roots()
    r = validate(chain, roots.store, at, name, (), (), explain=False, anchors=roots.certificates)
    return r.status is PathStatus.VALID


def ct_findings(ct: CTReport | None, anchored: bool) -> list[Finding]:
    """SCTs are evidence (Google's terms: never a block). A forged or copied SCT on a chain that is not the
    operator's is proof of forgery; on the operator's own chain it is an anomaly to report, nothing more."""
    if ct is None:
        return [
            Finding(
                "leaf_without_sct",
                INFO,
                "the leaf carries no Certificate Transparency SCTs (Microsoft's real leaves do)",
            )
        ]
    out: list[Finding] = []
    if ct.error:
        out.append(Finding("sct_unreadable", WARN, ct.error))
    if ct.valid:
        logs = ", ".join(f"{s.log} ({s.operator}, {s.state})" for s in ct.valid)
        out.append(
            Finding(
                "sct_valid",
                INFO,
                f"{len(ct.valid)} SCTs verify, from {ct.valid_operators} log operators: {logs}",
            )
        )
    if ct.invalid:
        logs = ", ".join(f"{s.log} ({s.operator}): {s.reason}" for s in ct.invalid)
        out.append(
            Finding(
                "sct_invalid",
                CRIT if not anchored else WARN,
                f"{len(ct.invalid)} SCTs do not verify over this certificate: {logs}"
                + (
                    "; SCTs copied from a real certificate or forged are evidence of forgery"
                    if not anchored
                    else "; the chain is the operator's own, so this is reported, not judged"
                ),
                None if anchored else Verdict.INTERCEPTED,
            )
        )
    unknown = [s for s in ct.scts if s.valid is None]
    if unknown:
        out.append(
            Finding(
                "sct_unverified",
                INFO,
                f"{len(unknown)} SCTs cannot be checked here: "
                + ", ".join(sorted({s.reason for s in unknown})),
            )
        )
    return out


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
    chain: Sequence[x509.Certificate], trusted: bool | None, at: dt.datetime, profile: TrustProfile
) -> tuple[Interceptor, list[Finding]]:
    m = identify(chain, profile.is_known)
    product = m.product
    interceptor = Interceptor(
        product.product if product else "unknown",
        product.vendor if product else "unknown",
        product.kind if product else "unknown",
        bool(trusted),
        m.ca_subject,
        ca_spki(m),
        m.matched,
        m.ca_cn,
    )
    return interceptor, [_naming(m), *_forgery_signs(chain[0], trusted, at)]


def _naming(m: Match) -> Finding:
    if m.product is not None:
        return Finding(
            "interceptor_identified",
            CRIT,
            f"the chain names {m.product.product} ({m.product.kind}, {m.product.vendor}): "
            f"turn off its TLS/mail scanning for this relay, or exclude the relay's host",
        )
    return Finding(
        "interceptor_unknown",
        CRIT,
        f"re-signed by {m.ca_subject!r}, which no known product pattern names: "
        "find the firewall, proxy or security software that owns this CA",
    )


def _forgery_signs(leaf: x509.Certificate, trusted: bool | None, at: dt.datetime) -> list[Finding]:
    found: list[Finding] = []
    if trusted:
        found.append(
            Finding(
                "interception_trusted_locally",
                CRIT,
                "this host trusts the interception CA, so local mail clients accept the forged "
                "certificate silently: it was installed by security software or pushed by policy",
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
    return found
