"""Smoke test of tests/peers.py: a private Postfix with STARTTLS, and sslsplit in front of it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import smtplib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from peers import free_port, port_listening, postfix_relay, sslsplit_autossl

# No skip when postfix/sslsplit/openssl are missing: scripts/setup.sh installs them, and a
# missing one should fail loudly (peers.py raises a clear RuntimeError). Deselect with -m "not peers".
pytestmark = pytest.mark.peers

INTERCEPT_CN = "Relaywatch Lab Interception CA"
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


@dataclass
class LabPki:
    root: x509.Certificate
    leaf: x509.Certificate
    chain_pem: Path  # leaf, intermediate
    leaf_key_pem: Path
    intercept_ca: x509.Certificate
    intercept_ca_pem: Path
    intercept_key_pem: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Relaywatch Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    d = tmp_path_factory.mktemp("pki")
    root_key, int_key, leaf_key, icpt_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert(_name("Relaywatch Lab Root"), root_key, _name("Relaywatch Lab Root"), root_key, ca=True)
    inter = _cert(_name("Relaywatch Lab Issuing CA"), int_key, root.subject, root_key, ca=True)
    leaf = _cert(
        _name("localhost"),
        leaf_key,
        inter.subject,
        int_key,
        ca=False,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    icpt = _cert(_name(INTERCEPT_CN), icpt_key, _name(INTERCEPT_CN), icpt_key, ca=True)
    (d / "chain.pem").write_bytes(_pem(leaf) + _pem(inter))
    (d / "leaf.key").write_bytes(_key_pem(leaf_key))
    (d / "intercept-ca.pem").write_bytes(_pem(icpt))
    (d / "intercept-ca.key").write_bytes(_key_pem(icpt_key))
    return LabPki(
        root=root,
        leaf=leaf,
        chain_pem=d / "chain.pem",
        leaf_key_pem=d / "leaf.key",
        intercept_ca=icpt,
        intercept_ca_pem=d / "intercept-ca.pem",
        intercept_key_pem=d / "intercept-ca.key",
    )


def _starttls_chain(port: int) -> list[x509.Certificate]:
    res = subprocess.run(
        ["timeout", "10", "openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
         "-servername", "localhost", "-showcerts"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    pems = _PEM_RE.findall(res.stdout)
    assert pems, f"no certificate from 127.0.0.1:{port} (rc {res.returncode}):\n{res.stderr.decode()[-3000:]}"
    return [x509.load_pem_x509_certificate(p) for p in pems]


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_postfix_relay_presents_lab_chain(tmp_path: Path, pki: LabPki) -> None:
    port = free_port()
    with postfix_relay(tmp_path, port, pki.chain_pem, pki.leaf_key_pem) as p:
        assert p == port
        with smtplib.SMTP("127.0.0.1", port, local_hostname="probe.relaywatch.lab", timeout=10) as smtp:
            code, _ = smtp.ehlo()
            assert code == 250
            for ext in ("pipelining", "size", "starttls"):
                assert smtp.has_extn(ext), smtp.esmtp_features
        chain = _starttls_chain(port)
        assert chain[0] == pki.leaf
        assert [_cn(c.subject) for c in chain] == ["localhost", "Relaywatch Lab Issuing CA"]
    assert not port_listening(port)


def test_sslsplit_reissues_with_interception_ca(tmp_path: Path, pki: LabPki) -> None:
    up_port = free_port()
    with postfix_relay(tmp_path, up_port, pki.chain_pem, pki.leaf_key_pem):
        last_log = ""
        for attempt in range(2):  # sslsplit 0.5.5 now and then dies on a connection: retry once
            mitm_port = free_port()
            with sslsplit_autossl(
                tmp_path, mitm_port, up_port, pki.intercept_ca_pem, pki.intercept_key_pem
            ) as mitm:
                assert mitm.port == mitm_port and mitm.alive()
                try:
                    chain = _starttls_chain(mitm_port)
                except AssertionError:
                    last_log = mitm.log_text()
                    if attempt == 0 and not mitm.alive():
                        continue
                    raise AssertionError(f"no certificate through sslsplit:\n{last_log}") from None
                forged = chain[0]
                assert _cn(forged.issuer) == INTERCEPT_CN, mitm.log_text()
                assert forged.issuer == pki.intercept_ca.subject
                assert forged.subject == pki.leaf.subject
                assert forged != pki.leaf
                forged.verify_directly_issued_by(pki.intercept_ca)
                san = forged.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                assert "localhost" in san.get_values_for_type(x509.DNSName)
                assert "upgrade" in mitm.connect_log.read_text(), mitm.log_text()
                break
        else:
            pytest.fail(f"sslsplit died twice:\n{last_log}")
        assert mitm.proc.poll() is not None and not port_listening(mitm_port)
        # The relay itself is untouched by the interception: the original leaf is still served.
        assert _starttls_chain(up_port)[0] == pki.leaf
