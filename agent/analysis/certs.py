"""DER -> the fields people and metrics need, computed once per certificate."""

from __future__ import annotations

import dataclasses
import functools

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from relaywatch.analysis.digest import sha256
from relaywatch.model import CertInfo

_SHA256 = hashes.SHA256()


# The agent sees the same few chains on every round: parse and describe each certificate once.
_CACHE = 512


@functools.lru_cache(maxsize=_CACHE)
def from_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=_CACHE)
def spki_sha256(cert: x509.Certificate) -> str:
    """Hashed from the certificate's own bytes, so that a key type this library cannot load (an
    attacker's choice) still has an identity instead of raising."""
    try:
        der = _spki_der(cert.tbs_certificate_bytes)
    except ValueError:
        der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return sha256(der).hex()


# What cryptography raises for an extension an attacker made unreadable: a duplicate (DuplicateExtension
# is no ValueError), a malformed value (ValueError), an empty sequence where members are required (an
# empty TLS Feature: TypeError). Such an extension reads as absent; the chain is still judged.
UNREADABLE: tuple[type[Exception], ...] = (ValueError, TypeError, x509.DuplicateExtension)
ABSENT_OR_UNREADABLE: tuple[type[Exception], ...] = (x509.ExtensionNotFound, *UNREADABLE)


def _tlv(data: bytes, pos: int) -> tuple[int, int]:
    """(start of value, end of element) of the DER element at `pos`."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    first = data[pos + 1]
    if first < 0x80:
        return pos + 2, pos + 2 + first
    n = first & 0x7F
    if not 0 < n <= 4 or pos + 2 + n > len(data):
        raise ValueError("bad DER length")
    length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    return pos + 2 + n, pos + 2 + n + length


def _spki_der(tbs: bytes) -> bytes:
    """TBSCertificate: [0] version?, serial, signature, issuer, validity, subject, subjectPublicKeyInfo."""
    pos, end = _tlv(tbs, 0)
    if tbs[pos] == 0xA0:  # explicit version
        pos = _tlv(tbs, pos)[1]
    for _ in range(5):
        pos = _tlv(tbs, pos)[1]
    if pos >= end or tbs[pos] != 0x30:
        raise ValueError("no SubjectPublicKeyInfo")
    return tbs[pos : _tlv(tbs, pos)[1]]


@functools.lru_cache(maxsize=_CACHE)
def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(_SHA256).hex()


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if attrs:
        value = attrs[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return rfc4514(name)


def dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except ABSENT_OR_UNREADABLE:
        return ()
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(names)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except ABSENT_OR_UNREADABLE:
        return False


def sct_count(cert: x509.Certificate) -> int:
    try:
        ext = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    except ABSENT_OR_UNREADABLE:
        return 0
    return len(ext.value)


def key_description(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return f"unsupported ({cert.public_key_algorithm_oid.dotted_string})"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__


def describe(cert: x509.Certificate, position: int, expected: bool = False) -> CertInfo:
    return dataclasses.replace(_describe(cert), position=position, expected=expected)


@functools.lru_cache(maxsize=_CACHE)
def _describe(cert: x509.Certificate) -> CertInfo:
    position, expected = 0, False
    try:
        sig = cert.signature_algorithm_oid._name
    except Exception:  # unknown OIDs have no name; the dotted form is still evidence
        sig = cert.signature_algorithm_oid.dotted_string
    return CertInfo(
        position=position,
        subject=rfc4514(cert.subject),
        issuer=rfc4514(cert.issuer),
        subject_cn=common_name(cert.subject),
        issuer_cn=common_name(cert.issuer),
        serial=format(cert.serial_number, "X"),
        sha256=fingerprint(cert),
        spki_sha256=spki_sha256(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names(cert),
        is_ca=is_ca(cert),
        self_signed=cert.subject == cert.issuer,
        sct_count=sct_count(cert),
        key=key_description(cert),
        signature_algorithm=sig,
        pem=cert.public_bytes(Encoding.PEM).decode("ascii"),
        expected=expected,
    )


@functools.lru_cache(maxsize=_CACHE)
def subject_string(cert: x509.Certificate) -> str:
    """The subject in RFC 4514 form, once per certificate (names are compared on every probe)."""
    return rfc4514(cert.subject)


def rfc4514(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return repr(name)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """A PEM bundle or concatenated DER certificates (what investigators save from captures)."""
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    certs: list[x509.Certificate] = []
    rest = data
    while rest:
        length = _der_length(rest)
        certs.append(x509.load_der_x509_certificate(rest[:length]))
        rest = rest[length:]
    if not certs:
        raise ValueError("no certificate found")
    return certs


def _der_length(data: bytes) -> int:
    if len(data) < 2 or data[0] != 0x30:
        raise ValueError("not a DER certificate (expected an ASN.1 SEQUENCE)")
    first = data[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        raise ValueError("bad DER length")
    return 2 + n + int.from_bytes(data[2 : 2 + n], "big")
