"""Certificate Transparency as evidence: each SCT embedded in the leaf, verified against a log list.

An SCT is a log's signature over the precertificate (RFC 6962 §3.2): version, signature type, timestamp,
entry type `precert_entry`, SHA-256 of the issuer's SubjectPublicKeyInfo, the TBSCertificate without the
SCT list (cryptography's `tbs_precertificate_bytes`), and the SCT's own extension bytes (tiled logs put
their leaf index there: signed data, not a reason to reject). An interceptor can copy a real leaf's SCTs
but cannot make them verify over its forged certificate, and cannot get a forged certificate logged by two
independent operators without that becoming public.

The log list is Google's v3 format. The packaged copy is agent/data/ct/log_list.json, taken unchanged from
relaywatch's shared/data/ct (see agent/data/ct/PROVENANCE.md). Google's terms: the list serves Chrome's CT
enforcement, so SCTs here are evidence for a verdict, never a hard block of anything. Every state the list
holds is accepted (usable, qualified, readonly, retired, rejected, pending, or none) and reported: a
certificate logged in 2021 carries SCTs from logs that are `rejected` today, and it was still logged.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import functools
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from relaywatch.analysis.certs import UNREADABLE, fingerprint, spki_sha256
from relaywatch.analysis.digest import sha256
from relaywatch.datadir import CT
from relaywatch.filestamp import file_key
from relaywatch.model import CTReport, SCTCheck

_EPOCH = dt.datetime(1970, 1, 1)
_MEMO_SIZE = 1024  # distinct leaves remembered (each entry is a few hundred bytes)
MAX_SCTS = 32  # more SCTs than any CA embeds: the rest are not verified (a hostile leaf's choice)


class CTError(ValueError):
    """A log list that cannot be used (unreadable, not v3 JSON)."""


@dataclass(frozen=True, slots=True)
class CTLog:
    log_id: bytes
    description: str
    operator: str
    state: str  # the list's state key, or "none" when the entry has no state
    key_der: bytes
    tiled: bool


@dataclass(frozen=True, slots=True, eq=False)
class LogList:
    source: str
    version: str
    timestamp: str
    logs: Mapping[bytes, CTLog]
    digest: str  # SHA-256 of the file: part of a profile's identity when the profile names the list

    def key(self, log: CTLog) -> Any:
        return _public_key(log.key_der)


@functools.lru_cache(maxsize=512)
def _public_key(der: bytes) -> Any:
    return serialization.load_der_public_key(der)


def packaged_list_path() -> Path:
    return CT / "log_list.json"


def load_log_list(path: str | Path | None = None) -> LogList:
    """The packaged list, or a file in the same format; cached by path and modification time."""
    p = Path(path) if path is not None else packaged_list_path()
    try:
        return _load(*file_key(p))
    except OSError as exc:
        raise CTError(f"CT log list {p}: {exc.strerror}") from exc


@functools.lru_cache(maxsize=8)
def _load(path: str, _stamp: int) -> LogList:
    try:
        raw = Path(path).read_bytes()
        doc = json.loads(raw)
    except OSError as exc:
        raise CTError(f"CT log list {path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:
        raise CTError(f"CT log list {path}: not JSON ({exc})") from exc
    return parse_log_list(doc, path, sha256(raw).hex())


def parse_log_list(doc: object, source: str, digest: str = "") -> LogList:
    if not isinstance(doc, dict) or not isinstance(doc.get("operators"), list):
        raise CTError(f"CT log list {source}: expected Google's v3 format (an 'operators' list)")
    logs: dict[bytes, CTLog] = {}
    for op in doc["operators"]:
        if not isinstance(op, dict):
            continue
        operator = str(op.get("name", "unknown"))
        for kind, tiled in (("logs", False), ("tiled_logs", True)):
            for entry in op.get(kind) or []:
                log = _entry(entry, operator, tiled)
                if log is not None:
                    logs.setdefault(log.log_id, log)
    if not logs:
        raise CTError(f"CT log list {source}: no logs with a log_id and a key")
    return LogList(source, str(doc.get("version", "")), str(doc.get("log_list_timestamp", "")), logs, digest)


def _entry(entry: object, operator: str, tiled: bool) -> CTLog | None:
    if not isinstance(entry, dict):
        return None
    try:
        log_id = base64.b64decode(str(entry["log_id"]), validate=True)
        key = base64.b64decode(str(entry["key"]), validate=True)
    except (KeyError, ValueError):
        return None
    if len(log_id) != 32:
        return None
    state = entry.get("state")
    name = next(iter(state), "none") if isinstance(state, dict) and state else "none"
    return CTLog(log_id, str(entry.get("description", "")), operator, str(name), key, tiled)


_memo: collections.OrderedDict[tuple[str, str, int], CTReport] = collections.OrderedDict()
_lock = threading.Lock()


def check_leaf(leaf: x509.Certificate, issuer: x509.Certificate | None, logs: LogList) -> CTReport | None:
    """None when the leaf carries no SCT list. Memoized by leaf, issuer key and list: the agent sees the
    same leaf on every round, and its SCTs cannot change."""
    key = (fingerprint(leaf), spki_sha256(issuer) if issuer is not None else "", id(logs))
    with _lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    report = _check(leaf, issuer, logs)
    if report is not None:
        with _lock:
            _memo[key] = report
            if len(_memo) > _MEMO_SIZE:
                _memo.popitem(last=False)
    return report


def _check(leaf: x509.Certificate, issuer: x509.Certificate | None, logs: LogList) -> CTReport | None:
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"))
    except x509.ExtensionNotFound:
        return None
    except UNREADABLE as exc:  # duplicate extensions or an SCT list the parser refuses
        return CTReport((), 0, logs.version, f"the SCT list cannot be read: {exc}")
    if not isinstance(ext.value, x509.PrecertificateSignedCertificateTimestamps):
        return CTReport((), 0, logs.version, "the SCT list cannot be read")
    try:
        tbs = leaf.tbs_precertificate_bytes
    except ValueError as exc:
        return CTReport((), 0, logs.version, f"no precertificate form of the leaf: {exc}")
    issuer_hash = bytes.fromhex(spki_sha256(issuer)) if issuer is not None else None
    checks = tuple(_one(sct, tbs, issuer_hash, logs) for sct in list(ext.value)[:MAX_SCTS])
    operators = {c.operator for c in checks if c.valid}
    return CTReport(checks, len(operators), logs.version)


def signed_data(
    timestamp_ms: int, issuer_key_hash: bytes, tbs: bytes, extensions: bytes, version: int = 0
) -> bytes:
    """RFC 6962 §3.2 digitally-signed struct for a precert_entry (signature_type certificate_timestamp)."""
    return (
        bytes([version, 0])
        + timestamp_ms.to_bytes(8, "big")
        + (1).to_bytes(2, "big")  # LogEntryType precert_entry
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + len(extensions).to_bytes(2, "big")
        + extensions
    )


def _one(
    sct: x509.certificate_transparency.SignedCertificateTimestamp,
    tbs: bytes,
    issuer_hash: bytes | None,
    logs: LogList,
) -> SCTCheck:
    ts = sct.timestamp.replace(tzinfo=None)
    stamp = ts.replace(tzinfo=dt.UTC)
    log = logs.logs.get(sct.log_id)
    log_id = base64.b64encode(sct.log_id).decode("ascii")
    if log is None:
        return SCTCheck(log_id, "", "unknown", "unknown", stamp, None, "log not in the log list")
    partial = (log_id, log.description, log.operator, log.state, stamp)
    if issuer_hash is None:
        return SCTCheck(*partial, None, "the leaf's issuer is not at hand")
    ms = (ts - _EPOCH) // dt.timedelta(milliseconds=1)
    data = signed_data(ms, issuer_hash, tbs, sct.extension_bytes)
    try:
        ok, why = _verify(logs.key(log), sct, data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return SCTCheck(*partial, None, f"the log's key cannot be used: {exc}")
    return SCTCheck(*partial, ok, why)


def _verify(
    key: Any, sct: x509.certificate_transparency.SignedCertificateTimestamp, data: bytes
) -> tuple[bool, str]:
    if not isinstance(sct.signature_hash_algorithm, hashes.SHA256):
        return False, f"hash {sct.signature_hash_algorithm.name} (logs sign with SHA-256)"
    alg = sct.signature_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if alg != x509.certificate_transparency.SignatureAlgorithm.ECDSA:
                return False, f"signature algorithm {alg.name} does not match the log's EC key"
            key.verify(sct.signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            if alg != x509.certificate_transparency.SignatureAlgorithm.RSA:
                return False, f"signature algorithm {alg.name} does not match the log's RSA key"
            key.verify(sct.signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False, f"log key type {type(key).__name__} is not used by CT logs"
    except InvalidSignature:
        return False, "signature does not verify over this certificate"
    return True, ""


# ---- refreshing the list safely: Google signs each published log list


def packaged_list_key_path() -> Path:
    """Google's log-list signing key (RSA-4096, SPKI SHA-256 f1d8b68e...): see agent/data/ct/PROVENANCE.md."""
    return CT / "google_log_list_pubkey.pem"


@dataclass(frozen=True, slots=True)
class ListSignature:
    valid: bool
    key_spki_sha256: str
    version: str = ""  # from the list, when it is JSON with one
    timestamp: str = ""


def verify_list_signature(body: bytes, signature: bytes, key_pem: bytes) -> ListSignature:
    """RSA PKCS#1 v1.5 with SHA-256 over the file's bytes, as Google signs all_logs_list.json and
    `openssl pkeyutl -verify` checks it. A key that is not an RSA public key raises CTError."""
    try:
        key = serialization.load_pem_public_key(key_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CTError(f"not a PEM public key ({exc})") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise CTError("the log-list signing key must be an RSA public key")
    spki = sha256(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).hex()
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return ListSignature(False, spki)
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return ListSignature(True, spki)
    return ListSignature(True, spki, str(doc.get("version", "")), str(doc.get("log_list_timestamp", "")))
