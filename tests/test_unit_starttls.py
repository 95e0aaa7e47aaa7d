"""STARTTLS classification: offered, missing, or masked (Cisco ASA's `XXXXXXXA`), and what the verdict
makes of each, from the capabilities a server (or a middlebox) sends."""

from __future__ import annotations

import dataclasses

import pytest
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.pki import LabPKI
from relaywatch.model import ProbeFailure, Severity, StartTLS, StartTLSState, Verdict
from relaywatch.probe.dialogue import classify, is_masked
from relaywatch.probe.pop3 import POP3
from relaywatch.probe.smtp import SMTP

from tests.support import codes, judged, record, scripted

EXCHANGE_EHLO = ("SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING")


@pytest.mark.parametrize("token", ["XXXXXXXA", "XXXXXXXX", "xxxxxxxa", "****", "########", "XXXA", "*X**"])
def test_filler_is_masked(token: str) -> None:
    assert is_masked(token)


@pytest.mark.parametrize("token", ["STARTTLS", "XXA", "XXAA", "8BITMIME", "XCLIENT", "X-EXPS", "AUTH"])
def test_real_keywords_are_not_masked(token: str) -> None:
    assert not is_masked(token)


@pytest.mark.parametrize(
    ("caps", "keyword", "state"),
    [
        ((*EXCHANGE_EHLO, "STARTTLS"), "STARTTLS", StartTLSState.OFFERED),
        (("starttls",), "STARTTLS", StartTLSState.OFFERED),  # keywords are case-insensitive
        (("STARTTLS REQUIRED",), "STARTTLS", StartTLSState.OFFERED),  # parameters after the keyword
        ((*EXCHANGE_EHLO, "XXXXXXXA"), "STARTTLS", StartTLSState.MASKED),  # Cisco ASA ESMTP inspection
        (EXCHANGE_EHLO, "STARTTLS", StartTLSState.MISSING),
        ((), "STARTTLS", StartTLSState.MISSING),
        (("", "  ", "PIPELINING"), "STARTTLS", StartTLSState.MISSING),  # blank entries are no capability
        (("STARTTLSX",), "STARTTLS", StartTLSState.MISSING),  # a whole keyword, not a prefix
        (("XSTARTTLS",), "STARTTLS", StartTLSState.MISSING),
        (("XXXXXXXA", "STARTTLS"), "STARTTLS", StartTLSState.OFFERED),  # offered wins over filler
        (("TOP", "STLS", "USER"), "STLS", StartTLSState.OFFERED),  # POP3 spells it STLS
        (("TOP", "STARTTLS"), "STLS", StartTLSState.MISSING),
        (("TOP", "XXXX"), "STLS", StartTLSState.MASKED),
    ],
)
def test_classify(caps: tuple[str, ...], keyword: str, state: StartTLSState) -> None:
    assert classify(caps, keyword) is state


def test_cisco_asa_masking_through_a_real_ehlo() -> None:
    data = b"250-mx.contoso.test Hello\r\n250-PIPELINING\r\n250-XXXXXXXA\r\n250 8BITMIME\r\n"
    with scripted(data) as (chan, _):
        smtp = SMTP("probe.test")
        assert classify(smtp.capabilities(chan), smtp.starttls_keyword) is StartTLSState.MASKED


def test_pop3_stls_through_a_real_capa() -> None:
    with scripted(b"+OK\r\nTOP\r\nSTLS\r\n.\r\n") as (chan, _):
        pop3 = POP3()
        assert classify(pop3.capabilities(chan), pop3.starttls_keyword) is StartTLSState.OFFERED


def stripped(
    state: StartTLSState, caps: tuple[str, ...] = EXCHANGE_EHLO, reply: str | None = None
) -> StartTLS:
    return StartTLS(state, caps, (), reply)


def test_masked_starttls_is_stripping_by_cisco_asa(lab_profile: TrustProfile) -> None:
    rec = record(
        tls=False, starttls=stripped(StartTLSState.MASKED, (*EXCHANGE_EHLO, "XXXXXXXA"), "500 5.5.1 unknown")
    )
    r = judged(rec, lab_profile)
    assert r.verdict is Verdict.STARTTLS_STRIPPED and "starttls_masked" in codes(r)
    assert r.analysis.interceptor is not None and "Cisco ASA" in r.analysis.interceptor.product
    assert r.analysis.interceptor.matched == "STARTTLS stripping signature"


@pytest.mark.parametrize(
    ("state", "code"),
    [(StartTLSState.MISSING, "starttls_missing"), (StartTLSState.REJECTED, "starttls_rejected")],
)
def test_missing_or_refused_starttls_is_stripping(
    lab_profile: TrustProfile, state: StartTLSState, code: str
) -> None:
    r = judged(record(tls=False, starttls=stripped(state, reply="454 4.7.0 TLS not available")), lab_profile)
    assert r.verdict is Verdict.STARTTLS_STRIPPED and code in codes(r)
    assert r.analysis.interceptor is None  # no product signature: nobody is named
    if state is StartTLSState.REJECTED:
        assert "454 4.7.0" in next(f.message for f in r.analysis.findings if f.code == code)


def test_a_profile_without_required_starttls_only_warns(lab_profile: TrustProfile) -> None:
    lenient = dataclasses.replace(lab_profile, require_starttls=False)
    r = judged(record(tls=False, starttls=stripped(StartTLSState.MISSING)), lenient)
    assert r.verdict is Verdict.OK
    [finding] = [f for f in r.analysis.findings if f.code == "starttls_missing"]
    assert finding.severity is Severity.WARNING


def test_ehlo_refusal_is_a_protocol_error_not_stripping(lab_profile: TrustProfile) -> None:
    """Exchange Online throttles with 421 at EHLO: the capabilities were never read."""
    failure = ProbeFailure("ehlo", "protocol", "EHLO refused: 421 4.3.2 Service not available")
    r = judged(record(tls=False, starttls=StartTLS(StartTLSState.UNKNOWN), failure=failure), lab_profile)
    assert r.verdict is Verdict.PROTOCOL_ERROR
    assert not [c for c in codes(r) if c.startswith("starttls_")]


def test_offered_starttls_with_a_sound_chain_is_ok(pki: LabPKI, lab_profile: TrustProfile) -> None:
    r = judged(record(pki.relay, pki.issuing), lab_profile)
    assert r.verdict is Verdict.OK and not [c for c in codes(r) if c.startswith("starttls_")]
