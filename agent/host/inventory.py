"""The host's trust stores as an inventory: CAs named like a known interceptor, and CAs outside
Mozilla's root program (as shipped by certifi). This explains why an interception is "trusted locally"."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import warnings
from collections.abc import Iterable

import certifi
from cryptography import x509
from relaywatch.analysis.certs import common_name, spki_sha256
from relaywatch.analysis.interceptors import catalogue
from relaywatch.analysis.truststore import host_store
from relaywatch.host.model import HostReport, StoreCA

MAX_LISTED = 50


@functools.lru_cache(maxsize=1)
def mozilla_spki() -> frozenset[str]:
    with open(certifi.where(), "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an old root with a non-positive serial is still a root
        return frozenset(spki_sha256(c) for c in x509.load_pem_x509_certificates(f.read()))


WINDOWS_STORES = ("ROOT", "CA")
MACOS_KEYCHAINS = (
    "/Library/Keychains/System.keychain",
    "/System/Library/Keychains/SystemRootCertificates.keychain",
)
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL)


def windows_store_certs(entries: Iterable[tuple[bytes, str, object]]) -> list[x509.Certificate]:
    """The certificates of one `ssl.enum_certificates(store)` answer: (bytes, encoding, trust) tuples,
    encoding "x509_asn" (a DER certificate) or "pkcs_7_asn" (skipped), trust True or a set of usage
    OIDs. One unreadable entry is skipped, not the store."""
    certs = []
    for der, encoding, _trust in entries:
        if encoding == "x509_asn":
            try:
                certs.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
    return certs


def macos_keychain_certs(pem: bytes) -> list[x509.Certificate]:
    """The certificates of `security find-certificate -a -p KEYCHAIN` output (PEM blocks one after the
    other); one unreadable block is skipped, not the keychain."""
    certs = []
    for block in _PEM_BLOCK.findall(pem):
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError:
            continue
    return certs


def _platform_stores() -> list[tuple[str, list[x509.Certificate]]]:
    """Windows and macOS system stores, where the platform offers them (Linux: the CA bundle that
    analysis/truststore.py finds, only)."""
    found: list[tuple[str, list[x509.Certificate]]] = []
    if sys.platform == "win32":
        import ssl  # Windows only: the probe worker otherwise leaves the system's OpenSSL out

        for store in WINDOWS_STORES:
            entries = ssl.enum_certificates(store)  # type: ignore[attr-defined]
            found.append((f"windows:{store}", windows_store_certs(entries)))
    elif sys.platform == "darwin":
        for keychain in MACOS_KEYCHAINS:
            try:
                pem = subprocess.run(
                    ["security", "find-certificate", "-a", "-p", keychain],
                    capture_output=True,
                    timeout=30,
                    check=False,
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            found.append((f"macos:{keychain}", macos_keychain_certs(pem)))
    return found


def _product(cert: x509.Certificate) -> str | None:
    """The same matcher as for a presented chain: by key, by subject, or by the CA that issued it."""
    product = catalogue().certificate(cert)
    return product.product if product else None


def inventory() -> HostReport:
    from relaywatch.host.processes import interceptor_processes

    store = host_store()
    stores = [(store.source, list(store.certificates)), *_platform_stores()]
    mozilla = mozilla_spki()
    named: list[StoreCA] = []
    foreign: list[StoreCA] = []
    seen: set[str] = set()
    for source, certs in stores:
        for cert in certs:
            spki = spki_sha256(cert)
            if spki in seen:
                continue
            seen.add(spki)
            ca = StoreCA(
                cert.subject.rfc4514_string(),
                common_name(cert.subject),
                spki,
                source,
                _product(cert),
                spki in mozilla,
            )
            if ca.product:
                named.append(ca)
            if not ca.in_mozilla:
                foreign.append(ca)
    return HostReport(
        interceptor_processes(),
        tuple(named[:MAX_LISTED]),
        tuple(foreign[:MAX_LISTED]),
        tuple(s for s, _ in stores),
    )
