"""Lab Certificate Transparency: log keys, SCTs they really sign, and leaves that embed them.

cryptography parses SCT lists but cannot build them, so the wire format is written here by hand
(RFC 6962 §3.2-3.3): a TLS-encoded SignedCertificateTimestampList inside a DER OCTET STRING as the
extension's value. The issuance follows a CA's order: the precertificate's TBSCertificate without the
poison extension is what the logs sign; the final certificate adds the SCT list as its last extension.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from relaywatch.analysis.certs import spki_sha256
from relaywatch.analysis.ct import signed_data
from relaywatch.lab.pki import Issued, make_leaf

SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_HASH_SHA256, _SIG_ECDSA = 4, 3  # TLS HashAlgorithm / SignatureAlgorithm codes


@dataclass(frozen=True)
class LabLog:
    description: str
    operator: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    tiled: bool = False  # static-ct-api logs carry a leaf_index extension in every SCT
    state: str | None = "usable"

    def spki(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(self.spki()).digest()


def der_octet_string(content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x04" + length + content


def encode_sct(log_id: bytes, timestamp_ms: int, extensions: bytes, signature: bytes) -> bytes:
    """One SignedCertificateTimestamp (v1) with an ECDSA/SHA-256 digitally-signed element."""
    return (
        b"\x00"
        + log_id
        + timestamp_ms.to_bytes(8, "big")
        + len(extensions).to_bytes(2, "big")
        + extensions
        + bytes([_HASH_SHA256, _SIG_ECDSA])
        + len(signature).to_bytes(2, "big")
        + signature
    )


def encode_sct_list(scts: Sequence[bytes]) -> bytes:
    body = b"".join(len(s).to_bytes(2, "big") + s for s in scts)
    return len(body).to_bytes(2, "big") + body


def sct_extension(scts: Sequence[bytes]) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(SCT_LIST_OID, der_octet_string(encode_sct_list(scts)))


def leaf_index_extension(index: int) -> bytes:
    """static-ct-api: extension_type 0 (leaf_index), a uint16 length, a uint40 index."""
    return b"\x00" + (5).to_bytes(2, "big") + index.to_bytes(5, "big")


def issue_with_scts(
    issuer: Issued,
    names: tuple[str, ...],
    logs: Sequence[LabLog],
    signers: Sequence[ec.EllipticCurvePrivateKey | None] = (),
    at: dt.datetime | None = None,
    **leaf: Any,
) -> Issued:
    """A leaf with one SCT per log. signers[i], when given, signs log i's SCT instead of the log's key
    (a forged SCT under a real log's id)."""
    key = leaf.pop("key", None) or ec.generate_private_key(ec.SECP256R1())
    serial = leaf.pop("serial", None) or x509.random_serial_number()
    start = leaf.pop("not_before", None) or dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(
        days=10
    )
    # the precertificate's TBSCertificate without its poison extension: what the logs sign, and what the
    # final certificate's TBSCertificate is once its SCT list is taken out (both extensions go last)
    tbs = make_leaf(
        issuer, names, key=key, serial=serial, not_before=start, **leaf
    ).cert.tbs_certificate_bytes
    issuer_hash = bytes.fromhex(spki_sha256(issuer.cert))
    when = at or start + dt.timedelta(minutes=5)
    ms = int(when.timestamp() * 1000)
    scts = []
    for i, log in enumerate(logs):
        ext = leaf_index_extension(1000 + i) if log.tiled else b""
        signer = (signers[i] if i < len(signers) else None) or log.key
        sig = signer.sign(signed_data(ms, issuer_hash, tbs, ext), ec.ECDSA(hashes.SHA256()))
        scts.append(encode_sct(log.log_id, ms, ext, sig))
    return make_leaf(
        issuer,
        names,
        key=key,
        serial=serial,
        not_before=start,
        extra=[(sct_extension(scts), False)],
        **leaf,
    )


def copy_scts(source: x509.Certificate, issuer: Issued, names: tuple[str, ...], **leaf: Any) -> Issued:
    """What a careful forger does: the real leaf's SCT list, byte for byte, on a forged certificate."""
    ext = source.extensions.get_extension_for_oid(SCT_LIST_OID)
    raw = ext.value.public_bytes()
    return make_leaf(issuer, names, extra=[(x509.UnrecognizedExtension(SCT_LIST_OID, raw), False)], **leaf)


def log_list(logs: Sequence[LabLog], version: str = "lab") -> dict[str, Any]:
    """A log list in Google's v3 format naming the lab logs (grouped by operator)."""
    operators: dict[str, dict[str, Any]] = {}
    for log in logs:
        op = operators.setdefault(
            log.operator, {"name": log.operator, "email": [], "logs": [], "tiled_logs": []}
        )
        entry: dict[str, Any] = {
            "description": log.description,
            "log_id": base64.b64encode(log.log_id).decode(),
            "key": base64.b64encode(log.spki()).decode(),
            "mmd": 86400,
        }
        if log.state:
            entry["state"] = {log.state: {"timestamp": "2026-01-01T00:00:00Z"}}
        op["tiled_logs" if log.tiled else "logs"].append(entry)
    return {
        "version": version,
        "log_list_timestamp": "2026-01-01T00:00:00Z",
        "operators": list(operators.values()),
    }
