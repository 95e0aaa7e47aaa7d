"""The Windows and macOS trust-store readers on the shapes those platforms answer with, since no such
machine is here: `ssl.enum_certificates(store)` tuples (bytes, "x509_asn" | "pkcs_7_asn", True | set of
usage OIDs), and `security find-certificate -a -p KEYCHAIN` output (PEM blocks back to back). Not
covered: the real system calls (the stores' contents, access rights, keychains that need unlocking)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from relaywatch.analysis.certs import spki_sha256
from relaywatch.host import inventory as inv
from relaywatch.lab.pki import make_lab_pki

PKI = make_lab_pki()
SHIELD = PKI.interception_ca.cert  # named like Avast's mail shield root
PUBLIC = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())[:3]
SERVER_AUTH = {"1.3.6.1.5.5.7.3.1"}


def _der(c: x509.Certificate) -> bytes:
    return c.public_bytes(Encoding.DER)


def _enum_answer() -> list[tuple[bytes, str, object]]:
    return [
        (_der(PUBLIC[0]), "x509_asn", True),
        (_der(SHIELD), "x509_asn", SERVER_AUTH),
        (b"0\x82\x01\x00garbage", "x509_asn", True),  # one unreadable entry must not lose the store
        (b"0\x80\x06\x09*\x86H\x86\xf7\r\x01\x07\x02", "pkcs_7_asn", True),  # a PKCS#7 bundle: skipped
        (_der(PUBLIC[1]), "x509_asn", {"1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.1"}),
    ]


def _security_output() -> bytes:
    """What `security find-certificate -a -p` prints: PEM blocks, one after the other, LF line ends."""
    broken = b"-----BEGIN CERTIFICATE-----\nTUlJQm9ndXM=\n-----END CERTIFICATE-----\n"
    return (
        b"".join(c.public_bytes(Encoding.PEM) for c in PUBLIC[:2])
        + broken
        + SHIELD.public_bytes(Encoding.PEM)
    )


def test_windows_store_entries_become_certificates() -> None:
    certs = inv.windows_store_certs(_enum_answer())
    assert certs == [PUBLIC[0], SHIELD, PUBLIC[1]]
    assert inv.windows_store_certs([]) == []


def test_macos_security_output_becomes_certificates() -> None:
    assert inv.macos_keychain_certs(_security_output()) == [PUBLIC[0], PUBLIC[1], SHIELD]
    crlf = _security_output().replace(b"\n", b"\r\n")
    assert inv.macos_keychain_certs(crlf) == [PUBLIC[0], PUBLIC[1], SHIELD]
    assert inv.macos_keychain_certs(b"") == []
    assert inv.macos_keychain_certs(b"security: SecKeychainSearchCopyNext: not found\n") == []


def test_windows_reader_asks_root_and_ca_and_names_the_shield_ca(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def enum_certificates(store: str) -> list[tuple[bytes, str, object]]:
        calls.append(store)
        return _enum_answer() if store == "ROOT" else []

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ssl, "enum_certificates", enum_certificates, raising=False)
    stores = dict(inv._platform_stores())  # inventory() adds the process list, which needs the platform
    assert calls == ["ROOT", "CA"] and list(stores) == ["windows:ROOT", "windows:CA"]
    assert [inv._product(c) for c in stores["windows:ROOT"]] == [None, "Avast", None]
    assert spki_sha256(SHIELD) not in inv.mozilla_spki()


def test_macos_reader_asks_both_keychains_and_names_the_shield_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    real_run = subprocess.run

    def run(argv: list[str], **kw: Any) -> Any:
        if argv[0] != "security":
            return real_run(argv, **kw)
        asked.append(argv)
        out = _security_output() if argv[-1] == inv.MACOS_KEYCHAINS[0] else b""
        return subprocess.CompletedProcess(argv, 0, out, b"")

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(subprocess, "run", run)
    stores = dict(inv._platform_stores())
    assert [a[-1] for a in asked] == list(inv.MACOS_KEYCHAINS)
    assert all(a[:4] == ["security", "find-certificate", "-a", "-p"] for a in asked)
    system = stores[f"macos:{inv.MACOS_KEYCHAINS[0]}"]
    assert [inv._product(c) for c in system] == [None, None, "Avast"]
    assert stores[f"macos:{inv.MACOS_KEYCHAINS[1]}"] == []
