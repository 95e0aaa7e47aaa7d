"""Offline analysis, the verdict a user acts on: chains from the lab PKI and Microsoft's real certificates
(agent/data/profiles/certs, from shared/data/ms365-ca) judged without any network."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from relaywatch.analysis.certs import spki_sha256
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab.pki import LabPKI, forge, make_ca, make_leaf
from relaywatch.model import ProbeFailure, Verdict

from tests.support import (
    LEAF_2021,
    PROFILE_CERTS,
    SHARED_CA,
    cn_name,
    codes,
    host_store_of,
    judged,
    load_pem,
    record,
    utc,
)

NOW = dt.datetime.now(dt.UTC)

# --------------------------------------------------------------------------- the lab PKI


def test_the_relay_chain_is_ok_with_its_evidence(pki: LabPKI, lab_profile: TrustProfile) -> None:
    r = judged(record(pki.relay, pki.issuing), lab_profile, host=host_store_of(pki.root))
    assert r.verdict is Verdict.OK and not [f for f in r.analysis.findings if f.verdict]
    assert [c.expected for c in r.analysis.chain] == [True, True]
    assert r.analysis.validated_path[-1] == pki.root.cert.subject.rfc4514_string()
    assert r.analysis.interceptor is None and r.analysis.trusted_locally is True
    assert "anchor_not_trusted_locally" not in codes(r)


def test_a_host_store_without_the_anchor_is_only_a_warning(pki: LabPKI, lab_profile: TrustProfile) -> None:
    r = judged(record(pki.relay, pki.issuing), lab_profile)  # empty host store
    assert r.verdict is Verdict.OK and "anchor_not_trusted_locally" in codes(r)


def test_leaf_only_completes_from_the_profile(pki: LabPKI, lab_profile: TrustProfile) -> None:
    r = judged(record(pki.relay), lab_profile)
    assert r.verdict is Verdict.OK and "chain_incomplete" in codes(r)
    assert "relaywatch Lab TLS CA OCSP 04" in next(
        f.message for f in r.analysis.findings if f.code == "chain_incomplete"
    )


def test_an_unbundled_sibling_ca_passes_through_the_root(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """Like Microsoft TLS G2 RSA CA OCSP 16: not in the profile, but under its root."""
    r = judged(record(pki.sibling_relay, pki.sibling), lab_profile)
    assert r.verdict is Verdict.OK and "chain_incomplete" not in codes(r)


def test_a_forged_copy_is_intercepted_and_named(pki: LabPKI, lab_profile: TrustProfile) -> None:
    fake = forge(pki.relay.cert, pki.interception_ca)
    r = judged(record(fake, pki.interception_ca), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED
    i = r.analysis.interceptor
    assert i is not None and (i.product, i.vendor, i.kind) == ("Avast", "Gen Digital", "antivirus")
    assert i.ca_spki_sha256 == spki_sha256(pki.interception_ca.cert) and not i.trusted_locally
    assert r.analysis.chain[0].subject == pki.relay.cert.subject.rfc4514_string()  # the subject is copied
    assert not r.analysis.chain[0].expected
    assert {
        "chain_not_anchored",
        "interceptor_identified",
        "leaf_freshly_issued",
        "leaf_without_sct",
    } <= codes(r)


def test_an_unknown_interceptor_is_reported_by_its_ca(pki: LabPKI, lab_profile: TrustProfile) -> None:
    r = judged(record(forge(pki.relay.cert, pki.unknown_ca)), lab_profile)  # CA not presented
    i = r.analysis.interceptor
    assert r.verdict is Verdict.INTERCEPTED and i is not None and i.product == "unknown"
    assert "Contoso Corporate Inspection CA" in i.ca_subject and "interceptor_unknown" in codes(r)


def test_an_interception_ca_this_host_trusts_is_called_out(pki: LabPKI, lab_profile: TrustProfile) -> None:
    fake = forge(pki.relay.cert, pki.interception_ca)
    r = judged(record(fake, pki.interception_ca), lab_profile, host=host_store_of(pki.interception_ca))
    assert r.verdict is Verdict.INTERCEPTED and r.analysis.trusted_locally is True
    assert r.analysis.interceptor is not None and r.analysis.interceptor.trusted_locally
    assert "interception_trusted_locally" in codes(r)


def test_a_self_signed_server_is_intercepted(lab_profile: TrustProfile) -> None:
    ca = make_ca(cn_name("Some Self Signed"))
    assert (
        judged(record(make_leaf(ca, ("smtp.relaywatch.test",))), lab_profile).verdict is Verdict.INTERCEPTED
    )


@pytest.mark.parametrize(
    ("leaf", "code"),
    [("expired_relay", "certificate_expired"), ("wrong_name_relay", "certificate_name_mismatch")],
)
def test_the_relays_own_bad_certificate_is_not_interception(
    pki: LabPKI, lab_profile: TrustProfile, leaf: str, code: str
) -> None:
    r = judged(record(getattr(pki, leaf), pki.issuing), lab_profile)
    assert r.verdict is Verdict.CERTIFICATE_INVALID and code in codes(r)
    assert r.analysis.interceptor is None and "chain_not_anchored" not in codes(r)


def test_an_expired_intermediate_is_certificate_invalid(pki: LabPKI, lab_profile: TrustProfile) -> None:
    past = NOW - dt.timedelta(days=400)
    old_ca = make_ca(
        cn_name("relaywatch Lab TLS CA OCSP 05", "relaywatch lab"), pki.root, days=300, not_before=past
    )
    leaf = make_leaf(old_ca, ("smtp.relaywatch.test",), not_before=past + dt.timedelta(days=1), days=800)
    r = judged(record(leaf, old_ca), lab_profile)
    assert r.verdict is Verdict.CERTIFICATE_INVALID and "certificate_chain_expired" in codes(r)
    assert r.analysis.interceptor is None


def test_the_same_chain_is_judged_again_when_time_moves(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """Validation is memoized per chain (the agent sees it every round); expiry must still show."""
    rec = record(pki.relay, pki.issuing)
    after = pki.relay.cert.not_valid_after_utc + dt.timedelta(seconds=5)
    before = pki.relay.cert.not_valid_before_utc - dt.timedelta(seconds=5)
    assert judged(rec, lab_profile, NOW).verdict is Verdict.OK
    assert "certificate_expired" in codes(judged(rec, lab_profile, after))
    assert "certificate_not_yet_valid" in codes(judged(rec, lab_profile, before))
    assert judged(rec, lab_profile, NOW).verdict is Verdict.OK


@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        ("TLSv1", Verdict.TLS_DOWNGRADED),
        ("TLSv1.1", Verdict.TLS_DOWNGRADED),
        ("TLSv1.2", Verdict.OK),
        ("TLSv1.3", Verdict.OK),
    ],
)
def test_tls_below_the_profile_minimum_is_a_downgrade(
    pki: LabPKI, lab_profile: TrustProfile, version: str, verdict: Verdict
) -> None:
    r = judged(record(pki.relay, pki.issuing, version=version), lab_profile)
    assert r.verdict is verdict
    assert ("tls_version_below_minimum" in codes(r)) is (verdict is Verdict.TLS_DOWNGRADED)


def test_the_most_severe_finding_decides(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """TLS 1.0 and a forged chain: interception is what the user must hear about first."""
    fake = forge(pki.relay.cert, pki.interception_ca)
    r = judged(record(fake, pki.interception_ca, version="TLSv1"), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED and "tls_version_below_minimum" in codes(r)
    assert r.analysis.findings[0].verdict is Verdict.INTERCEPTED  # findings sorted by what they imply


def test_no_certificate_or_garbage_is_interception_not_a_crash(lab_profile: TrustProfile) -> None:
    empty = judged(record(), lab_profile)
    assert empty.verdict is Verdict.INTERCEPTED and "no_certificate" in codes(empty)
    garbage = judged(record(b"\x30\x03\x02\x01\x00"), lab_profile)
    assert garbage.verdict is Verdict.INTERCEPTED and {"certificate_unparsable", "no_certificate"} <= codes(
        garbage
    )


@pytest.mark.parametrize(
    ("failure", "verdict", "code"),
    [
        (
            ProbeFailure("connect", "unreachable", "127.0.0.1 port 1: Connection refused"),
            Verdict.UNREACHABLE,
            "connect_failed",
        ),
        (ProbeFailure("greeting", "timeout", "no answer"), Verdict.PROTOCOL_ERROR, "greeting_timeout"),
        (
            ProbeFailure("handshake", "tls", "tlsv1 alert inappropriate fallback"),
            Verdict.TLS_DOWNGRADED,
            "tls_downgrade_detected",
        ),
        (ProbeFailure("handshake", "tls", "unexpected eof"), Verdict.PROTOCOL_ERROR, "handshake_failed"),
    ],
)
def test_failures_map_to_verdicts(
    lab_profile: TrustProfile, failure: ProbeFailure, verdict: Verdict, code: str
) -> None:
    r = judged(record(tls=False, failure=failure), lab_profile)
    assert r.verdict is verdict and code in codes(r)


def test_a_post_tls_hiccup_keeps_the_chain_verdict(pki: LabPKI, lab_profile: TrustProfile) -> None:
    failure = ProbeFailure("post_tls", "protocol", "server closed the connection")
    r = judged(record(pki.relay, pki.issuing, failure=failure), lab_profile)
    assert r.verdict is Verdict.OK and "post_tls_dialogue_failed" in codes(r)


# --------------------------------------------------------------------------- Microsoft's real certificates


@pytest.fixture(scope="module")
def microsoft365() -> TrustProfile:
    return load_profile("microsoft365")


@pytest.fixture(scope="module")
def chain_2021() -> list[x509.Certificate]:
    """The real mail.protection.outlook.com leaf (2021-11-01..2022-10-31) and its issuing CA."""
    return [*load_pem(LEAF_2021), *load_pem(PROFILE_CERTS / "digicert-cloud-services-ca-1.pem")]


TENANT = "smtp://contoso-com.mail.protection.outlook.com:25"


def test_real_2021_chain_is_ok_in_its_time(
    microsoft365: TrustProfile, chain_2021: list[x509.Certificate]
) -> None:
    r = judged(record(*chain_2021, target=TENANT), microsoft365, utc("2022-01-01"))
    assert r.verdict is Verdict.OK
    assert [c.expected for c in r.analysis.chain] == [True, True]
    assert r.analysis.validated_path[-1].startswith("CN=DigiCert Global Root CA")
    assert r.analysis.chain[0].sct_count == 3


def test_real_2021_chain_is_certificate_invalid_now(
    microsoft365: TrustProfile, chain_2021: list[x509.Certificate]
) -> None:
    r = judged(record(*chain_2021, target=TENANT), microsoft365, NOW)
    assert r.verdict is Verdict.CERTIFICATE_INVALID and "certificate_expired" in codes(r)
    assert r.analysis.interceptor is None  # an old certificate is not interception


def test_real_leaf_alone_completes_from_the_bundle(
    microsoft365: TrustProfile, chain_2021: list[x509.Certificate]
) -> None:
    r = judged(record(chain_2021[0], target=TENANT), microsoft365, utc("2022-06-01"))
    assert r.verdict is Verdict.OK and "chain_incomplete" in codes(r)


def test_forged_copy_of_the_real_leaf_is_intercepted(
    microsoft365: TrustProfile, chain_2021: list[x509.Certificate]
) -> None:
    ca = make_ca(cn_name("Kaspersky Anti-Virus Personal Root Certificate", "AO Kaspersky Lab"))
    fake = forge(chain_2021[0], ca)
    assert fake.cert.subject == chain_2021[0].subject
    r = judged(record(fake, ca, target="smtp://smtp.office365.com:587"), microsoft365)
    assert r.verdict is Verdict.INTERCEPTED
    assert r.analysis.interceptor is not None and r.analysis.interceptor.product == "Kaspersky"
    assert r.analysis.interceptor.ca_spki_sha256 == r.analysis.chain[1].spki_sha256


def test_the_real_chain_under_another_profile_is_foreign(
    lab_profile: TrustProfile, chain_2021: list[x509.Certificate]
) -> None:
    """What `/probe?profile=` relies on: the profile, not the certificate, says what is expected."""
    r = judged(record(*chain_2021, target=TENANT), lab_profile, utc("2022-01-01"))
    assert r.verdict is Verdict.INTERCEPTED and r.analysis.interceptor is not None
    assert "DigiCert Cloud Services CA-1" in r.analysis.interceptor.ca_subject


def test_the_bundled_certificates_are_the_shared_ones() -> None:
    """The package carries copies of shared/data/ms365-ca; a copy that drifted would judge other chains."""
    if not SHARED_CA.is_dir():
        pytest.skip(f"{SHARED_CA} is not on this machine")
    bundled = sorted(PROFILE_CERTS.glob("*.pem"))
    assert len(bundled) >= 10
    for pem in bundled:
        assert pem.read_bytes() == (SHARED_CA / pem.name).read_bytes(), pem.name
    assert LEAF_2021.read_bytes() == (SHARED_CA / LEAF_2021.name).read_bytes()


# The analysis must still say `intercepted` when a forger puts a name no verifier accepts first in the
# leaf (here a bare "*"): the verifier's ValueError once escaped and the probe ended as
# protocol_error/analysis_failed, below interception.
def test_a_forged_leaf_with_a_bare_wildcard_first_is_still_intercepted(
    pki: LabPKI, lab_profile: TrustProfile
) -> None:
    leaf = make_leaf(pki.unknown_ca, ("*", "smtp.relaywatch.test"))
    r = judged(record(leaf, pki.unknown_ca), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED
