"""Certificate name matching: the target's own name, the profile's names (Microsoft's leaves carry theirs,
not each tenant's), wildcards one label deep; and naming the product from an interception CA's name."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from relaywatch.analysis.chain import PathResult, PathStatus, names_overlap, validate
from relaywatch.analysis.interceptors import identify, identify_stripper
from relaywatch.analysis.profile import TrustProfile, load_profile
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
