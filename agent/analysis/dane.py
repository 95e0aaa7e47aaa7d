"""DANE for SMTP (RFC 7672): secure TLSA records matched against the presented chain, by hand.

No maintained Python library does it, and it is small: usages 2 (DANE-TA) and 3 (DANE-EE) only (0 and
1 are unusable for SMTP, §3.1.3), selectors 0 (the whole certificate) and 1 (its SubjectPublicKeyInfo),
matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512). DANE-EE matches the leaf and ignores its names and
dates (§3.1.1). DANE-TA matches any certificate of the presented chain; the leaf must then chain to it
by signature and carry the MX host's name (§3.2): an interceptor that appends the real CA certificate to
its forged chain does not match.

The TLSA data is attacker-controlled DNS text: a record that does not parse, or has a digest of the wrong
length, is reported as unusable, never a traceback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from relaywatch.analysis.certs import dns_names
from relaywatch.analysis.digest import sha256, sha512
from relaywatch.analysis.membership import signed_by
from relaywatch.model import DaneResult, DaneStatus, GatewayDNS, TLSAResult

DANE_TA, DANE_EE = 2, 3
DIGEST_LENGTH = {1: 32, 2: 64}
MAX_DATA = 8192  # hex characters kept of one record's data


@dataclass(frozen=True, slots=True)
class TLSA:
    usage: int
    selector: int
    matching: int
    data: bytes


def parse_tlsa(text: str) -> TLSA:
    """`usage selector matching hexdata` (presentation form, the hex may be split by spaces)."""
    fields = text.split()
    if len(fields) < 4 or not all(f.isascii() and f.isdigit() for f in fields[:3]):
        raise ValueError(f"not a TLSA record: {text[:80]!r}")
    usage, selector, matching = (int(f) for f in fields[:3])
    if max(usage, selector, matching) > 255:
        raise ValueError(f"TLSA field out of range: {text[:80]!r}")
    hexdata = "".join(fields[3:])
    try:
        data = bytes.fromhex(hexdata)
    except ValueError:
        raise ValueError(f"TLSA data is not hex: {hexdata[:40]!r}") from None
    return TLSA(usage, selector, matching, data)


def unusable(record: TLSA) -> str:
    """Why a record cannot authenticate an SMTP server; "" when it can."""
    if record.usage not in (DANE_TA, DANE_EE):
        return f"usage {record.usage} is unusable for SMTP (RFC 7672 §3.1.3: only 2 and 3)"
    if record.selector not in (0, 1):
        return f"unknown selector {record.selector}"
    if record.matching not in (0, 1, 2):
        return f"unknown matching type {record.matching}"
    want = DIGEST_LENGTH.get(record.matching)
    if want is not None and len(record.data) != want:
        return (
            f"matching type {record.matching} needs {want} bytes of digest, the record has {len(record.data)}"
        )
    if not record.data:
        return "empty certificate association data"
    return ""


def association(cert: x509.Certificate, selector: int, matching: int) -> bytes:
    """What a TLSA record of this selector and matching type holds for this certificate."""
    if selector == 0:
        selected = cert.public_bytes(Encoding.DER)
    else:
        selected = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if matching == 1:
        return sha256(selected)
    if matching == 2:
        return sha512(selected)
    return selected


def name_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 as RFC 7672 §3.2.3 asks: a DNS SAN equal to the host, or a wildcard for its first label."""
    host = host.lower().rstrip(".")
    for name in dns_names(cert):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def chains_to(chain: Sequence[x509.Certificate], position: int) -> bool:
    """The leaf reaches chain[position] by signatures, through the certificates presented before it."""
    return all(signed_by(chain[i], chain[i + 1]) for i in range(position))


def _association(cert: x509.Certificate, selector: int, matching: int) -> bytes | None:
    try:
        return association(cert, selector, matching)
    except (ValueError, TypeError):  # an odd key type the library cannot encode
        return None


def match_record(
    record: TLSA, chain: Sequence[x509.Certificate], names: Sequence[str]
) -> tuple[int | None, str]:
    """The position of the certificate this usable record matches, and why not when None. names: the
    reference identifiers DANE-TA checks the leaf against (RFC 7672 §3.2.2)."""
    if record.usage == DANE_EE:
        if chain and _association(chain[0], record.selector, record.matching) == record.data:
            return 0, ""
        return None, "the leaf does not match"
    for position, cert in enumerate(chain):
        if _association(cert, record.selector, record.matching) != record.data:
            continue
        if not chains_to(chain, position):
            return None, f"certificate {position} matches, but the leaf is not issued through it"
        if not any(name_matches(chain[0], name) for name in names):
            return None, f"certificate {position} matches, but the leaf is not for {' or '.join(names)}"
        return position, ""
    return None, "no certificate of the chain matches"


def judge(evidence: GatewayDNS, chain: Sequence[x509.Certificate]) -> DaneResult:
    """The DANE status of one session: records matched, or why DANE does not apply."""
    addresses, tlsa = evidence.addresses, evidence.tlsa
    if addresses is not None and addresses.status == "bogus":
        return DaneResult(
            DaneStatus.BOGUS, (), f"the address records of {evidence.host}: {addresses.message}"
        )
    if tlsa is None:
        why = evidence.note or (
            f"the address records of {evidence.host} are not DNSSEC-secure" if addresses else "no DNS lookup"
        )
        return DaneResult(DaneStatus.UNAVAILABLE, (), why)
    if tlsa.status == "bogus":
        return DaneResult(DaneStatus.BOGUS, (), f"{tlsa.name} TLSA: {tlsa.message}")
    if tlsa.status != "ok" or not tlsa.records:
        what = {"nxdomain": "no TLSA records", "ok": "no TLSA records"}.get(
            tlsa.status, tlsa.message or tlsa.status
        )
        return DaneResult(DaneStatus.UNAVAILABLE, (), f"{tlsa.name}: {what}")
    if not tlsa.secure:
        return DaneResult(DaneStatus.UNAVAILABLE, (), f"{tlsa.name}: TLSA records are not DNSSEC-secure")
    names = reference_names(evidence)
    results = tuple(_judge_record(text, chain, names) for text in tlsa.records)
    usable = [r for r in results if r.usable]
    if not usable:
        return DaneResult(
            DaneStatus.UNAVAILABLE, results, "no usable TLSA record (RFC 7672 §2.2: TLS still mandatory)"
        )
    if not chain:
        return DaneResult(DaneStatus.UNAVAILABLE, results, "no certificate to match")
    if any(r.matched_position is not None for r in usable):
        return DaneResult(DaneStatus.VERIFIED, results, "")
    return DaneResult(DaneStatus.MISMATCH, results, "; ".join(dict.fromkeys(r.note for r in usable)))


def reference_names(evidence: GatewayDNS) -> tuple[str, ...]:
    """The MX host, and the CNAME-expanded name when the TLSA records were found there (RFC 7672
    §3.2.2: the TLSA base domain and the original MX host name)."""
    expanded = evidence.addresses.cname if evidence.addresses is not None else ""
    if expanded and evidence.tlsa is not None and evidence.tlsa.name == f"_25._tcp.{expanded}":
        return (expanded, evidence.host)
    return (evidence.host,)


def _judge_record(text: str, chain: Sequence[x509.Certificate], names: Sequence[str]) -> TLSAResult:
    try:
        record = parse_tlsa(text)
    except ValueError as exc:
        return TLSAResult(-1, -1, -1, "", None, False, str(exc))
    data = record.data.hex()[:MAX_DATA]
    why = unusable(record)
    if why:
        return TLSAResult(record.usage, record.selector, record.matching, data, None, False, why)
    position, note = match_record(record, chain, names)
    return TLSAResult(record.usage, record.selector, record.matching, data, position, True, note)
