"""`relaywatch analyze` on real Microsoft certificates (public CA certificates copied into the package)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from relaywatch.analysis.profile import builtin_dir, load_profile
from relaywatch.lab.pki import forge, make_ca

from tests.support import LEAF_2021, cli_json, cn_name, write_pem

CERTS = builtin_dir() / "certs"


@pytest.fixture(scope="module")
def chain_2021(tmp_path_factory: pytest.TempPathFactory) -> Path:
    leaf = x509.load_pem_x509_certificate(LEAF_2021.read_bytes())
    ca = x509.load_pem_x509_certificate((CERTS / "digicert-cloud-services-ca-1.pem").read_bytes())
    return write_pem(tmp_path_factory.mktemp("real") / "chain.pem", leaf, ca)


def test_real_2021_chain_ok_in_its_time(chain_2021: Path) -> None:
    rc, [r] = cli_json(
        "analyze", str(chain_2021), "--at", "2022-01-01", "--host", "contoso.mail.protection.outlook.com"
    )
    assert (rc, r["verdict"]) == (0, "ok")
    assert [c["expected"] for c in r["chain"]] == [True, True]
    assert r["validated_path"][-1].startswith("CN=DigiCert Global Root CA")
    assert r["chain"][0]["sct_count"] == 3


def test_real_2021_chain_expired_today(chain_2021: Path) -> None:
    rc, [r] = cli_json("analyze", str(chain_2021), "--host", "contoso.mail.protection.outlook.com")
    assert (rc, r["verdict"]) == (1, "certificate_invalid")
    assert "certificate_expired" in {f["code"] for f in r["findings"]}


def test_real_leaf_completes_from_bundled_intermediate(tmp_path: Path) -> None:
    leaf_only = tmp_path / "leaf.der"
    leaf_only.write_bytes(x509.load_pem_x509_certificate(LEAF_2021.read_bytes()).public_bytes(Encoding.DER))
    _rc, [r] = cli_json("analyze", str(leaf_only), "--at", "2022-06-01")
    assert r["verdict"] == "ok" and "chain_incomplete" in {f["code"] for f in r["findings"]}


def test_forged_copy_of_real_leaf_is_intercepted(tmp_path: Path) -> None:
    real = x509.load_pem_x509_certificate(LEAF_2021.read_bytes())
    ca = make_ca(cn_name("Kaspersky Anti-Virus Personal Root Certificate", "AO Kaspersky Lab"))
    fake = forge(real, ca)
    assert fake.cert.subject == real.subject
    path = write_pem(tmp_path / "forged.pem", fake, ca)
    rc, [r] = cli_json("analyze", str(path), "--host", "smtp.office365.com")
    assert (rc, r["verdict"]) == (1, "intercepted")
    assert r["interceptor"]["product"] == "Kaspersky"
    assert r["interceptor"]["ca_spki_sha256"] == r["chain"][1]["spki_sha256"]


def test_builtin_profile_covers_both_generations() -> None:
    """Every bundled intermediate chains to an anchor; both the G1 and the G2 generation anchor."""
    p = load_profile("microsoft365")
    anchors = [a.subject.rfc4514_string() for a in p.anchors]
    for root in (
        "CN=DigiCert Global Root CA,",
        "CN=Microsoft TLS RSA Root G2,",
        "CN=DigiCert Global Root G2,",
    ):
        assert any(a.startswith(root) for a in anchors), root
    pool = [*p.anchors, *p.intermediates]
    for inter in p.intermediates:
        cert = inter
        for _ in range(4):  # walk up through the bundle to an anchor, checking each signature
            if cert in p.anchors:
                break
            issuer = next(c for c in pool if c.subject == cert.issuer and c != cert)
            cert.verify_directly_issued_by(issuer)
            cert = issuer
        assert cert in p.anchors, inter.subject
    assert {"smtp.office365.com", "*.mail.protection.outlook.com"} <= set(p.names)


def test_profile_certificates_keep_provenance() -> None:
    text = (CERTS / "PROVENANCE.txt").read_text()
    assert "certifi" in text and "MailCheck" in text
