"""TLSA matching and MTA-STS policy parsing, pure: hand-written code on attacker-controlled data."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st
from relaywatch.analysis import dane, mta_sts
from relaywatch.lab.pki import LabPKI, make_leaf
from relaywatch.model import DaneStatus, DNSAnswer, GatewayDNS
from relaywatch.target import TargetError, parse_allow_pattern, parse_target


def _spki(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[no-any-return]


def _evidence(records: tuple[str, ...], secure: bool = True, host: str = "mx1.lab.test") -> GatewayDNS:
    return GatewayDNS(
        host,
        DNSAnswer(host, "A", "ok", True, ("127.0.0.1",)),
        DNSAnswer(f"_25._tcp.{host}", "TLSA", "ok", secure, records),
    )


def test_every_selector_and_matching_type(pki: LabPKI) -> None:
    leaf = make_leaf(pki.issuing, ("mx1.lab.test",))
    chain = [leaf.cert, pki.issuing.cert]
    full, key = leaf.cert.public_bytes(Encoding.DER), _spki(leaf.cert)
    for selector, data in ((0, full), (1, key)):
        for matching, digest in (
            (0, data),
            (1, hashlib.sha256(data).digest()),
            (2, hashlib.sha512(data).digest()),
        ):
            r = dane.judge(_evidence((f"3 {selector} {matching} {digest.hex()}",)), chain)
            assert r.status is DaneStatus.VERIFIED, (selector, matching)


def test_dane_ee_ignores_names_and_dates(pki: LabPKI) -> None:
    import datetime as dt

    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=900)
    leaf = make_leaf(pki.issuing, ("other.test",), not_before=past, days=30)
    record = f"3 1 1 {hashlib.sha256(_spki(leaf.cert)).hexdigest()}"
    assert dane.judge(_evidence((record,)), [leaf.cert]).status is DaneStatus.VERIFIED


def test_dane_ta_checks_signature_and_name(pki: LabPKI) -> None:
    ta = f"2 1 1 {hashlib.sha256(_spki(pki.issuing.cert)).hexdigest()}"
    good = make_leaf(pki.issuing, ("*.lab.test",))
    assert dane.judge(_evidence((ta,)), [good.cert, pki.issuing.cert]).records[0].matched_position == 1
    wrong_name = make_leaf(pki.issuing, ("mail.other.test",))
    assert dane.judge(_evidence((ta,)), [wrong_name.cert, pki.issuing.cert]).status is DaneStatus.MISMATCH
    # an interceptor appending the real CA certificate to its forged chain does not match
    forged = make_leaf(pki.interception_ca, ("mx1.lab.test",))
    r = dane.judge(_evidence((ta,)), [forged.cert, pki.issuing.cert])
    assert r.status is DaneStatus.MISMATCH and "not issued through" in r.reason
    # DANE-TA never matches the leaf through a DANE-EE-style record for another usage
    ee_of_ca = f"3 1 1 {hashlib.sha256(_spki(pki.issuing.cert)).hexdigest()}"
    assert dane.judge(_evidence((ee_of_ca,)), [good.cert, pki.issuing.cert]).status is DaneStatus.MISMATCH


def test_dane_ta_names_follow_the_tlsa_base_of_a_cname(pki: LabPKI) -> None:
    """RFC 7672 §3.2.2: records found at the CNAME-expanded name make it a reference identifier beside the
    MX host; records found at the MX host itself (the fallback) do not."""
    ta = f"2 1 1 {hashlib.sha256(_spki(pki.issuing.cert)).hexdigest()}"
    chain = [make_leaf(pki.issuing, ("relay.hoster.test",)).cert, pki.issuing.cert]
    addresses = DNSAnswer("mx1.lab.test", "A", "ok", True, ("127.0.0.1",), cname="relay.hoster.test")
    at_target = GatewayDNS(
        "mx1.lab.test", addresses, DNSAnswer("_25._tcp.relay.hoster.test", "TLSA", "ok", True, (ta,))
    )
    assert dane.reference_names(at_target) == ("relay.hoster.test", "mx1.lab.test")
    assert dane.judge(at_target, chain).status is DaneStatus.VERIFIED
    at_original = GatewayDNS(
        "mx1.lab.test", addresses, DNSAnswer("_25._tcp.mx1.lab.test", "TLSA", "ok", True, (ta,))
    )
    r = dane.judge(at_original, chain)
    assert r.status is DaneStatus.MISMATCH and "not for mx1.lab.test" in r.reason
    mx_named = [make_leaf(pki.issuing, ("mx1.lab.test",)).cert, pki.issuing.cert]
    assert dane.judge(at_target, mx_named).status is DaneStatus.VERIFIED


def test_unusable_and_insecure_records(pki: LabPKI) -> None:
    leaf = make_leaf(pki.issuing, ("mx1.lab.test",))
    digest = hashlib.sha256(_spki(leaf.cert)).hexdigest()
    for record in (
        f"0 1 1 {digest}",
        f"1 1 1 {digest}",
        f"3 2 1 {digest}",
        f"3 1 3 {digest}",
        "3 1 1 abcd",
        "x",
    ):
        r = dane.judge(_evidence((record,)), [leaf.cert])
        assert r.status is DaneStatus.UNAVAILABLE and not r.records[0].usable, record
    assert (
        dane.judge(_evidence((f"3 1 1 {digest}",), secure=False), [leaf.cert]).status
        is DaneStatus.UNAVAILABLE
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_tlsa_text_is_judged(text: str) -> None:
    r = dane.judge(_evidence((text,)), [])
    assert r.status in (DaneStatus.UNAVAILABLE,)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.integers(0, 1), st.integers(0, 2), st.binary(min_size=1, max_size=80))
def test_random_records_never_match_a_fresh_key(
    usage: int, selector: int, matching: int, data: bytes
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    assert (
        data
        != hashlib.sha256(
            key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ).digest()
    )
    record = dane.TLSA(usage, selector, matching, data)
    assert dane.unusable(record) or len(data) in (32, 64) or matching == 0


POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.contoso.com\r\nmx: *.mail.protection.outlook.com\r\n"
    "max_age: 604800\r\n"
)


def test_policy_by_the_rfc() -> None:
    p = mta_sts.parse_policy(POLICY)
    assert p == mta_sts.Policy("enforce", 604800, ("mail.contoso.com", "*.mail.protection.outlook.com"))
    assert mta_sts.parse_policy(POLICY.replace("\r\n", "\n")) == p
    assert mta_sts.mx_matches("contoso-com.mail.protection.outlook.com", p.mx)
    assert not mta_sts.mx_matches("a.b.mail.protection.outlook.com", p.mx)
    assert not mta_sts.mx_matches("mail.protection.outlook.com", p.mx)
    assert mta_sts.parse_txt(('"v=STSv1; id=20260101T0000"',)) == "20260101T0000"


@pytest.mark.parametrize(
    "text",
    [
        POLICY.replace("mode: enforce", "mode: enforce\rmx: evil.test"),  # a bare CR inside a line
        POLICY + "mode: testing\r\n",  # mode twice
        POLICY.replace("STSv1", "STSv2"),
        POLICY.replace("604800", "99999999999"),
        "version: STSv1\nmode: enforce\nmax_age: 86400\n",  # no mx
        POLICY.replace("mail.contoso.com", "mail.contoso.com\x00evil"),
        POLICY + "no colon here\n",
    ],
)
def test_policy_games_are_invalid(text: str) -> None:
    with pytest.raises(mta_sts.PolicyError):
        mta_sts.parse_policy(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_policy_text_parses_or_is_invalid(text: str) -> None:
    with contextlib.suppress(mta_sts.PolicyError):
        mta_sts.parse_policy(text)


def test_txt_of_64_kib_is_invalid() -> None:
    with pytest.raises(mta_sts.PolicyError):
        mta_sts.parse_txt(("v=STSv1; id=" + "a" * 65536,))


def test_mx_targets_parse_and_allow_only_by_mx_patterns() -> None:
    t = parse_target("mx:Contoso.COM")
    assert (t.scheme, t.host, t.port, t.protocol, t.starttls) == ("mx", "contoso.com", 25, "smtp", True)
    for bad in ("mx:", "mx:127.0.0.1", "mx:contoso.com:25", "mx:a/b", "mx:a@b"):
        with pytest.raises(TargetError):
            parse_target(bad)
    assert parse_allow_pattern("mx:*.contoso.com").matches(parse_target("mx:eu.contoso.com"))
    assert not parse_allow_pattern("*.contoso.com:25").matches(parse_target("mx:eu.contoso.com"))


def test_cname_chains_are_followed_bounded_and_loops_end() -> None:
    import dns.message
    import dns.rrset
    from relaywatch.probe import dns as gateway_dns

    def reply(*links: tuple[str, str]) -> dns.message.Message:
        r = dns.message.make_response(dns.message.make_query("a.test", "A"))
        r.answer += [dns.rrset.from_text(f"{n}.", 60, "IN", "CNAME", f"{t}.") for n, t in links]
        r.answer.append(dns.rrset.from_text("z.test.", 60, "IN", "A", "127.0.0.1"))
        return r

    assert gateway_dns._answer(reply(("a.test", "B.test"), ("b.test", "z.test")), "a.test", "A").cname == (
        "z.test"
    )
    assert gateway_dns._answer(reply(), "a.test", "A").cname == ""
    assert gateway_dns._answer(reply(("a.test", "b.test"), ("b.test", "a.test")), "a.test", "A").cname
    long = [(f"n{i}.test" if i else "a.test", f"n{i + 1}.test") for i in range(50)]
    assert gateway_dns._answer(reply(*long), "a.test", "A").cname == f"n{gateway_dns.MAX_CNAMES}.test"
