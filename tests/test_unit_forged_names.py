"""Whatever names a forger writes into a leaf, the verdict stands: a chain that does not lead to the profile's
anchors is `intercepted`, one signed by the profile's CAs is never blamed, and neither ends as an analysis
failure. The subjectAltName is written as raw DER, so names that cryptography's own builder refuses (U-labels,
over-long names, odd address lengths, bytes that are not ASCII) reach the analysis as a forger sends them."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID
from hypothesis import given, settings
from hypothesis import strategies as st
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.pki import Issued, LabPKI
from relaywatch.model import Verdict

from tests.support import EMPTY_HOST_STORE, cn_name, codes, der_tlv, host_store_of, judged, record

TARGET = "smtp.relaywatch.test"  # the name record() probes

# Names seen in the wild or chosen to break a parser: the verifier refuses most of them as DNS names.
ODD = (
    b"*",
    b"*.",
    b".",
    b"",
    b"a..b.test",
    b"trailing.dot.test.",
    b"smtp.relaywatch.test.",
    b"SMTP.RELAYWATCH.TEST",
    b"1.2.3.4",
    b"127.0.0.1",
    b"::1",
    b"under_score.test",
    b"-leading.test",
    b"*.*.test",
    b"a*.test",
    b"*.test",
    b"*.relaywatch.test",
    b"x" * 300,
    (b"a" * 63 + b".") * 5 + b"test",
    "bücher.test".encode(),
    b"xn--.test",
    b"xn--zz.test",
    b"nul\x00.test",
    b"sp ace.test",
    TARGET.encode(),
)


def _san(dns: list[bytes], ips: list[bytes]) -> x509.UnrecognizedExtension:
    """dNSName [2] and iPAddress [7], implicitly tagged, exactly the bytes given."""
    body = b"".join(der_tlv(0x82, d) for d in dns) + b"".join(der_tlv(0x87, i) for i in ips)
    return x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, der_tlv(0x30, body))


def _leaf(issuer: Issued, dns: list[bytes], ips: list[bytes]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(cn_name("forged leaf", "relaywatch lab relay"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(_san(dns, ips), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
        .sign(issuer.key, hashes.SHA256())
    )


DNS = st.lists(
    st.one_of(
        st.sampled_from(ODD),
        st.binary(max_size=80),
        st.text(alphabet="ab.-*_ü0\x00 ", max_size=40).map(lambda s: s.encode()),
    ),
    max_size=6,
)
IPS = st.lists(
    st.one_of(st.sampled_from([b"\x7f\x00\x00\x01", b"\x00" * 16]), st.binary(max_size=17)), max_size=2
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(dns=DNS, ips=IPS, with_ca=st.booleans(), locally_trusted=st.booleans())
def test_a_foreign_chain_is_intercepted_whatever_the_leaf_names(
    pki: LabPKI,
    lab_profile: TrustProfile,
    dns: list[bytes],
    ips: list[bytes],
    with_ca: bool,
    locally_trusted: bool,
) -> None:
    leaf = _leaf(pki.unknown_ca, dns, ips)
    chain = (leaf, pki.unknown_ca) if with_ca else (leaf,)
    host = host_store_of(pki.unknown_ca) if locally_trusted else EMPTY_HOST_STORE
    r = judged(record(*chain), lab_profile, host=host)
    assert r.verdict in (Verdict.INTERCEPTED, Verdict.UNEXPECTED_ISSUER), r.analysis.findings
    assert "analysis_failed" not in codes(r) and "chain_not_anchored" in codes(r)
    assert r.analysis.interceptor is not None and "Contoso" in r.analysis.interceptor.ca_subject


@settings(max_examples=100, deadline=None, derandomize=True)
@given(dns=DNS, ips=IPS)
def test_the_operators_own_chain_is_never_intercepted_whatever_the_leaf_names(
    pki: LabPKI, lab_profile: TrustProfile, dns: list[bytes], ips: list[bytes]
) -> None:
    """Signed by the profile's issuing CA: at worst an invalid certificate, never interception."""
    r = judged(record(_leaf(pki.issuing, dns, ips), pki.issuing), lab_profile)
    assert r.verdict in (Verdict.OK, Verdict.CERTIFICATE_INVALID), r.analysis.findings
    assert r.analysis.interceptor is None and "analysis_failed" not in codes(r)


@pytest.mark.parametrize("first", [n for n in ODD if n != TARGET.encode()])
def test_an_odd_first_name_does_not_hide_the_target_name(
    pki: LabPKI, lab_profile: TrustProfile, first: bytes
) -> None:
    """The relay's own leaf with a strange name first and the target's name after it is still `ok`; forged by
    another CA with the same names, it is `intercepted`."""
    names = [first, TARGET.encode()]
    assert judged(record(_leaf(pki.issuing, names, []), pki.issuing), lab_profile).verdict is Verdict.OK
    forged = judged(record(_leaf(pki.unknown_ca, names, []), pki.unknown_ca), lab_profile)
    assert forged.verdict is Verdict.INTERCEPTED
