"""Fail closed: a forged leaf must not buy a softer verdict by breaking the parser, and no certificate may
move up to the leaf's place (found by the red-team pass; each case gave `protocol_error` or `ok` before)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab.demo import public_ca
from relaywatch.lab.pki import LAB_NAMES, Issued, LabPKI, make_leaf
from relaywatch.model import DNSAnswer, GatewayDNS, Verdict
from relaywatch.probe.limits import Clock, Limits
from relaywatch.probe.tls import _capped
from relaywatch.target import Target

from tests.support import der_tlv, judged, record

_ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")


def _patched(cert: x509.Certificate, issuer: Issued, old: bytes, new: bytes) -> bytes:
    """The certificate with bytes of its TBS replaced, signed again by its issuer: DER no builder writes."""
    tbs = cert.tbs_certificate_bytes
    assert old in tbs
    tbs = tbs.replace(old, new, 1)
    key = issuer.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der_tlv(0x30, tbs + der_tlv(0x30, _ECDSA_SHA256) + der_tlv(0x03, b"\x00" + sig))


def _unknown_oid_leaf(issuer: Issued, value: bytes) -> x509.Certificate:
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.99"), value)
    return make_leaf(issuer, (*LAB_NAMES, "127.0.0.1"), extra=[(ext, False)]).cert


def test_a_duplicate_subject_alt_name_is_still_intercepted(pki: LabPKI, lab_profile: TrustProfile) -> None:
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in LAB_NAMES]).public_bytes()
    leaf = _unknown_oid_leaf(pki.unknown_ca, san)
    der = _patched(leaf, pki.unknown_ca, bytes.fromhex("0603551d63"), bytes.fromhex("0603551d11"))
    with pytest.raises(x509.DuplicateExtension):
        _ = x509.load_der_x509_certificate(der).extensions
    r = judged(record(der, pki.unknown_ca), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED


def test_an_empty_tls_feature_is_still_intercepted(pki: LabPKI, lab_profile: TrustProfile) -> None:
    leaf = _unknown_oid_leaf(pki.unknown_ca, b"\x30\x00")
    tls_feature = bytes.fromhex("06082b06010505070118")  # id-pe-tlsfeature
    der = _patched(leaf, pki.unknown_ca, bytes.fromhex("0603551d63"), tls_feature)
    r = judged(record(der, pki.unknown_ca), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED


def test_when_the_analysis_itself_fails_a_foreign_chain_is_intercepted(
    pki: LabPKI, lab_profile: TrustProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever breaks inside the analysis: a chain that is not the operator's fails closed, and the
    operator's own chain stays a protocol error (our problem, not an interception)."""
    from relaywatch.analysis import verdict

    def broken(*args: object) -> None:
        raise RuntimeError("a bug, or an input nobody foresaw")

    monkeypatch.setattr(verdict, "_analyze", broken)
    forged = make_leaf(pki.unknown_ca, (*LAB_NAMES, "127.0.0.1"))
    assert judged(record(forged, pki.unknown_ca), lab_profile).verdict is Verdict.INTERCEPTED
    genuine = judged(record(pki.relay, pki.issuing), lab_profile)
    assert genuine.verdict is Verdict.PROTOCOL_ERROR
    assert [f.code for f in genuine.analysis.findings] == ["analysis_failed"]


def test_an_oversized_leaf_keeps_its_place(pki: LabPKI) -> None:
    """A forged leaf padded past the size cap, then the relay's real chain: the real leaf must never become
    the leaf by the forged one being dropped."""
    limits = Limits()
    pad = _unknown_oid_leaf(pki.unknown_ca, b"\x04\x82\x90\x00" + b"A" * 0x9000)
    big, real, issuing = (c.public_bytes(Encoding.DER) for c in (pad, pki.relay.cert, pki.issuing.cert))
    assert len(big) > limits.max_cert_size
    chain, dropped = _capped([big, real, issuing], Clock(limits))
    assert chain == [big, real, issuing] and dropped == 0  # the leaf keeps position 0, whatever its size
    chain, dropped = _capped([real, big, issuing], Clock(limits))
    assert chain == [real] and dropped == 2  # nothing after the first over the cap moves up


def test_an_oversized_forged_leaf_before_the_real_chain_is_intercepted(
    pki: LabPKI, lab_profile: TrustProfile
) -> None:
    pad = _unknown_oid_leaf(pki.unknown_ca, b"\x04\x82\x90\x00" + b"A" * 0x9000)
    ders = [c.public_bytes(Encoding.DER) for c in (pad, pki.relay.cert, pki.issuing.cert)]
    kept, _ = _capped(ders, Clock(Limits()))
    assert judged(record(*kept), lab_profile).verdict is Verdict.INTERCEPTED


def test_a_public_certificate_for_an_unauthenticated_mx_name_is_intercepted(
    pki: LabPKI, tmp_path: Path
) -> None:
    """mx: targets: the MX host name comes from DNS. Without DNSSEC (or an enforced MTA-STS policy that
    lists it), an attacker who spoofs the MX answer can present a genuine public certificate of its own."""
    public = public_ca(tmp_path)
    profile = load_profile(str(pki.write(tmp_path, public_roots="public-roots.pem", ct_logs="ct-logs.json")))
    plain = judged(record(public.leaf, public.ca, target="smtp://smtp.relaywatch.test:25"), profile)
    assert plain.verdict is Verdict.UNEXPECTED_ISSUER  # a name the user chose: a CA change
    target = Target("mx:relaywatch.test", "mx", "smtp.relaywatch.test", 25)
    base = dataclasses.replace(record(public.leaf, public.ca), target=target)

    def via(mx_secure: bool) -> Verdict:
        mx = DNSAnswer("relaywatch.test", "MX", "ok", mx_secure, ("10 smtp.relaywatch.test.",))
        dns = GatewayDNS("smtp.relaywatch.test", None, None, "relaywatch.test", mx)
        return judged(dataclasses.replace(base, dns=dns), profile).verdict

    assert via(mx_secure=False) is Verdict.INTERCEPTED
    assert via(mx_secure=True) is Verdict.UNEXPECTED_ISSUER
