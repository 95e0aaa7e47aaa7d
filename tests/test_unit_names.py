"""Certificate name matching: the target's own name, the profile's names (Microsoft's leaves carry theirs,
not each tenant's), wildcards one label deep; and naming the product from an interception CA's name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from relaywatch.analysis.certs import spki_sha256
from relaywatch.analysis.chain import PathResult, PathStatus, names_overlap, validate
from relaywatch.analysis.interceptors import (
    CatalogueError,
    catalogue,
    identify,
    identify_stripper,
    parse_catalogue,
)
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.host.inventory import _product
from relaywatch.host.processes import _product_of
from relaywatch.lab.pki import LabPKI, make_ca, make_leaf

from tests.support import LEAF_2021, PROFILE_CERTS, cn_name, load_pem, utc

NOW = dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("smtp.office365.com", "smtp.office365.com"),
        ("SMTP.Office365.COM", "smtp.office365.com"),
        ("smtp.office365.com.", "smtp.office365.com"),
        ("*.mail.protection.outlook.com", "contoso-com.mail.protection.outlook.com"),
        ("contoso-com.mail.protection.outlook.com", "*.mail.protection.outlook.com"),  # either side
        ("*.mail.protection.outlook.com", "*.mail.protection.outlook.com"),
    ],
)
def test_names_that_meet(a: str, b: str) -> None:
    assert names_overlap(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("*.mail.protection.outlook.com", "mail.protection.outlook.com"),  # a wildcard needs a label
        ("*.mail.protection.outlook.com", "a.b.mail.protection.outlook.com"),  # one label only
        ("*.outlook.com", "*.mail.protection.outlook.com"),  # two wildcards meet only when equal
        ("*.office365.com", "smtp.office365.com.evil.example"),
        ("smtp.office365.com", "smtp.office365.co"),
        ("*.com", "evil.example"),
        ("*.office365.com", "smtp-office365.com"),
    ],
)
def test_names_that_do_not_meet(a: str, b: str) -> None:
    assert not names_overlap(a, b)


def _valid(
    pki: LabPKI, profile: TrustProfile, names: tuple[str, ...], host: str, allowed: tuple[str, ...]
) -> PathResult:
    leaf = make_leaf(pki.issuing, names)
    return validate([leaf.cert, pki.issuing.cert], profile.store, NOW, host, allowed, profile.intermediates)


def test_host_named_in_the_leaf_is_valid(pki: LabPKI, lab_profile: TrustProfile) -> None:
    r = _valid(pki, lab_profile, ("mx.contoso.test",), "MX.contoso.test", ())
    assert r.status is PathStatus.VALID and r.path[-1] == pki.root.cert


def test_ip_address_host_matches_an_ip_san_only(pki: LabPKI, lab_profile: TrustProfile) -> None:
    assert _valid(pki, lab_profile, ("mx.test", "127.0.0.1"), "127.0.0.1", ()).status is PathStatus.VALID
    assert _valid(pki, lab_profile, ("127.0.0.1",), "127.0.0.2", ()).status is PathStatus.NAME_MISMATCH


def test_wildcard_leaf_covers_one_label(pki: LabPKI, lab_profile: TrustProfile) -> None:
    names = ("*.mail.protection.contoso.test",)
    assert _valid(pki, lab_profile, names, "a.mail.protection.contoso.test", ()).status is PathStatus.VALID
    deep = _valid(pki, lab_profile, names, "a.b.mail.protection.contoso.test", ())
    assert deep.status is PathStatus.NAME_MISMATCH and "a.b.mail.protection.contoso.test" in deep.error


def test_a_profile_name_carried_by_the_leaf_makes_it_valid(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """A tenant's MX host is not in Microsoft's leaf; the profile's names are, so the chain is the relay's."""
    r = _valid(pki, lab_profile, ("smtp.relaywatch.test",), "contoso.mx.test", ("smtp.relaywatch.test",))
    assert r.status is PathStatus.VALID and r.path
    alone = _valid(pki, lab_profile, ("smtp.relaywatch.test",), "contoso.mx.test", ())
    assert alone.status is PathStatus.NAME_MISMATCH  # it is the profile's name that makes it valid
    other = _valid(pki, lab_profile, ("mail.other.test",), "contoso.mx.test", ("smtp.relaywatch.test",))
    assert other.status is PathStatus.NAME_MISMATCH and other.path  # the path itself is sound


def test_a_foreign_chain_is_untrusted_whatever_its_names(lab_profile: TrustProfile) -> None:
    """Names never rescue a chain that does not lead to the anchors: that is interception."""
    ca = make_ca(cn_name("Some Proxy CA"))
    leaf = make_leaf(ca, ("smtp.relaywatch.test",))
    r = validate(
        [leaf.cert, ca.cert], lab_profile.store, NOW, "smtp.relaywatch.test", ("smtp.relaywatch.test",)
    )
    assert r.status is PathStatus.UNTRUSTED and r.path == ()


# Found by this test: v.DNSName("*") constructs, but build_server_verifier() then raises ValueError. A
# name the verifier refuses is skipped (chain._path_by_own_name), never an analysis failure.
def test_leaf_with_names_no_verifier_accepts_still_gets_judged(
    pki: LabPKI, lab_profile: TrustProfile
) -> None:
    """The path question is asked with a name the leaf carries; an attacker's first SANs (a bare wildcard,
    an underscore label) must not crash it or hide the sound path behind them."""
    r = _valid(pki, lab_profile, ("*", "under_score.test", "mx.test"), "contoso.test", ("mx.test",))
    assert r.status is PathStatus.VALID and r.path


def test_real_leaf_under_the_builtin_profile() -> None:
    """The 2021 mail.protection.outlook.com leaf: valid for a tenant's MX host through its wildcard, and for
    smtp.office365.com through the profile's names; without them, a deeper name is a mismatch."""
    profile = load_profile("microsoft365")
    chain = [*load_pem(LEAF_2021), *load_pem(PROFILE_CERTS / "digicert-cloud-services-ca-1.pem")]
    at = utc("2022-01-01")

    def check(host: str, p: TrustProfile = profile) -> PathResult:
        return validate(chain, p.store, at, host, p.names, p.intermediates)

    tenant = check("contoso-com.mail.protection.outlook.com")
    assert tenant.status is PathStatus.VALID
    assert tenant.path[-1].subject.rfc4514_string().startswith("CN=DigiCert Global Root CA")
    smtp = check("smtp.office365.com")
    assert smtp.status is PathStatus.VALID
    bare = dataclasses.replace(profile, names=())
    assert check("a.b.mail.protection.outlook.com", bare).status is PathStatus.NAME_MISMATCH
    assert check("smtp.office365.com", bare).status is PathStatus.NAME_MISMATCH


@pytest.mark.parametrize(
    ("cn", "org", "product"),
    [
        ("Avast Web/Mail Shield Root", "Avast", "Avast"),
        ("avast web/mail shield root", "x", "Avast"),  # case-insensitive, as products vary it
        ("Kaspersky Anti-Virus Personal Root Certificate", "AO Kaspersky Lab", "Kaspersky"),
        ("Some Inspection CA", "AO Kaspersky Lab", "Kaspersky"),  # by the organisation alone
        ("ESET SSL Filter CA", "ESET, spol. s r. o.", "ESET"),
        ("FortiGate CA", "Fortinet", "Fortinet FortiGate"),
    ],
)
def test_interception_ca_names_its_product(cn: str, org: str, product: str) -> None:
    ca = make_ca(cn_name(cn, org))
    m = identify([make_leaf(ca, ("smtp.office365.com",)).cert, ca.cert])
    assert m.product is not None and m.product.product == product
    assert m.ca is ca.cert and m.ca_cn == cn


def test_unknown_ca_is_reported_by_its_name(pki: LabPKI) -> None:
    m = identify([make_leaf(pki.unknown_ca, ("smtp.office365.com",)).cert])  # the CA itself not sent
    assert m.product is None and m.ca is None
    assert "Contoso Corporate Inspection CA" in m.ca_subject and m.ca_cn == "Contoso Corporate Inspection CA"


def test_a_product_name_in_the_leaf_subject_alone_names_nobody() -> None:
    """Only CA names count: a server may call its own leaf anything."""
    ca = make_ca(cn_name("Contoso Issuing CA"))
    leaf = make_leaf(ca, ("mx.test",), subject=cn_name("Avast Web/Mail Shield Root"))
    assert identify([leaf.cert, ca.cert]).product is None


def test_cisco_stripping_signature_needs_both_signs() -> None:
    caps = ("PIPELINING", "XXXXXXXA", "8BITMIME")
    product = identify_stripper(caps, "500 5.5.1 command not recognized")
    assert product is not None and "Cisco ASA" in product.product
    assert identify_stripper(caps, "454 4.7.0 TLS not available") is None
    assert identify_stripper(("PIPELINING", "STARTTLS"), "500 5.5.1 command not recognized") is None


# ---- one matcher for CA names, CA keys, trust-store CAs and processes (agent/data/interceptors.yml)

CAS = Path(__file__).parent / "data" / "interceptor-cas"


def _named(cn: str, org: str | None = None, ou: str | None = None) -> str | None:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    attrs += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)] if ou else []
    ca = make_ca(x509.Name(attrs))
    m = identify([make_leaf(ca, ("smtp.office365.com",)).cert, ca.cert])
    assert _product(ca.cert) == (m.product.product if m.product else None)  # the host inventory agrees
    return m.product.product if m.product else None


def test_an_organisation_written_into_the_common_name_is_not_an_organisation() -> None:
    """The RFC 4514 text of this name contains "O=AO Kaspersky Lab"; its organisation is Contoso."""
    cn = "Inspection CA,O=AO Kaspersky Lab"
    name = cn_name(cn, "Contoso")
    assert "O=AO Kaspersky Lab" in name.rfc4514_string()  # what a text matcher would have been fooled by
    assert _named(cn, "Contoso") is None
    assert _named("Inspection CA", "AO Kaspersky Lab") == "Kaspersky"  # the real attribute does name it


@pytest.mark.parametrize(
    ("cn", "org", "ou", "product"),
    [
        ("Mail Shield", "x", "generated by Avast Antivirus for SSL/TLS scanning", "Avast"),
        ("Filter", "ESET, spol. s r. o.", None, "ESET"),
        ("FGT60F0000000001", "Fortinet", None, "Fortinet FortiGate"),  # device serial + organisation
        ("Some CA", "Fortinet", "Certificate Authority", "Fortinet FortiGate"),  # organisation + unit
        ("Some CA", "Fortinet", None, None),  # the organisation alone is not enough for Fortinet
        ("Some CA", "Contoso", "Certificate Authority", None),
        ("Some CA", "Contoso", "TMWS", "Trend Micro Web Security"),
        ("Some CA", "TMWS", None, None),  # the unit's pattern in the organisation is not the unit
    ],
)
def test_organisation_and_unit_name_products(cn: str, org: str, ou: str | None, product: str | None) -> None:
    assert _named(cn, org, ou) == product


def test_a_ca_is_named_by_its_key_whatever_its_name() -> None:
    ca = make_ca(cn_name("Perfectly Innocent CA", "Contoso"))
    text = (
        "products:\n  - {product: Lab Proxy, vendor: Lab, kind: proxy, names: [{CN: 'Lab Proxy CA'}],\n"
        f"     spki_sha256: [{spki_sha256(ca.cert).upper()}], processes: [labproxy]}}\n"
    )
    cat = parse_catalogue(text)
    found = cat.ca(ca.cert.subject, ca.cert)
    assert found is not None and found[0].product == "Lab Proxy" and spki_sha256(ca.cert) in found[1]
    assert cat.ca(ca.cert.subject, None) is None  # by name alone it is nobody
    assert cat.certificate(ca.cert) is not None and cat.process("/opt/lab/LabProxy") is not None


@pytest.mark.parametrize(
    ("pem", "product"),
    [("zscaler-root-ca.pem", "Zscaler Internet Access"), ("cisco-umbrella-root-ca.pem", "Cisco Umbrella")],
)
def test_shipped_ca_keys_are_the_published_roots(pem: str, product: str) -> None:
    cert = x509.load_pem_x509_certificate((CAS / pem).read_bytes())
    found = catalogue().by_key(cert)
    assert found is not None and found.product == product
    assert catalogue().ca(cert.subject, cert) == (found, f"CA key (SPKI SHA-256 {spki_sha256(cert)})")


def test_every_shipped_key_has_its_certificate_here() -> None:
    """No hash without the certificate it was computed from (tests/data/interceptor-cas)."""
    shipped = {h for p in catalogue().products for h in p.spki_sha256}
    here = {spki_sha256(x509.load_pem_x509_certificate(f.read_bytes())) for f in CAS.glob("*.pem")}
    assert shipped == here


@pytest.mark.parametrize(
    ("name", "exe", "product"),
    [
        ("AvastSvc.exe", r"C:\Program Files\Avast Software\Avast\AvastSvc.exe", "Avast"),
        ("avp", "/opt/kaspersky/kav4fs/bin/avp", "Kaspersky"),
        ("mitmdump", "", "mitmproxy"),
        ("", "/usr/bin/SSLSPLIT", "sslsplit"),
        ("avpx", "/usr/bin/avpx", None),
        ("python3", "/usr/bin/python3", None),
    ],
)
def test_process_names(name: str, exe: str, product: str | None) -> None:
    found = catalogue().process(name, exe)
    assert (found.product if found else None) == product == _product_of(name, exe)


def test_a_trust_store_ca_issued_by_a_named_ca_is_named() -> None:
    root = make_ca(cn_name("Avast Web/Mail Shield Root", "Avast"))
    sub = make_ca(cn_name("Per-device CA", "Contoso"), root)
    assert _product(sub.cert) == "Avast" and _product(make_ca(cn_name("Contoso Root")).cert) is None


def test_a_malformed_catalogue_fails_at_load() -> None:
    with pytest.raises(CatalogueError, match="name rule"):
        parse_catalogue("products:\n  - {product: X, vendor: X, kind: x, names: [{Org: 'X'}]}\n")
    with pytest.raises(CatalogueError, match="spki_sha256"):
        parse_catalogue("products:\n  - {product: X, vendor: X, kind: x, spki_sha256: [abc]}\n")
