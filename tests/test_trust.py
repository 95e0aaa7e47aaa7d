"""Trust engine: membership by signatures, CT evidence, unexpected_issuer, session findings.

Real exchanges with lab servers on loopback; SCTs really signed by lab log keys (agent/lab/ctlog.py)."""

# ruff: noqa: F811  (the `public` fixture is shared with test_ct.py by import)
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab import ctlog
from relaywatch.lab.pki import LabPKI, _name, make_ca, make_leaf
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.model import Verdict

from tests.support import cli_json, probe
from tests.test_ct import ISSUER_2021, LEAF_2021, NAMES, PublicLab, public  # noqa: F401 (fixture)

pytestmark = pytest.mark.peers


def codes(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in result.analysis.findings}


# ---- the SCT wire format, written by hand: round trip through cryptography's parser


def test_analyze_reports_ct_offline(tmp_path: Path) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(LEAF_2021.read_bytes() + ISSUER_2021.read_bytes())
    rc, [r] = cli_json(
        "analyze", str(chain), "--at", "2022-01-01", "--host", "contoso.mail.protection.outlook.com"
    )
    assert (rc, r["verdict"]) == (0, "ok")
    assert r["ct"]["valid_operators"] == 3 and all(s["valid"] for s in r["ct"]["scts"])
    assert "sct_valid" in {f["code"] for f in r["findings"]}


def test_forged_leaf_with_scts_copied_from_the_real_one_is_intercepted(tmp_path: Path) -> None:
    real = x509.load_pem_x509_certificate(LEAF_2021.read_bytes())
    ca = make_ca(_name("Contoso Inspection CA", "Contoso"))
    fake = ctlog.copy_scts(
        real, ca, ("smtp.office365.com", "*.mail.protection.outlook.com"), subject=real.subject
    )
    path = tmp_path / "forged.pem"
    path.write_bytes(fake.cert_pem() + ca.cert_pem())
    rc, [r] = cli_json("analyze", str(path), "--host", "smtp.office365.com")
    assert (rc, r["verdict"]) == (1, "intercepted")
    assert "sct_invalid" in {f["code"] for f in r["findings"]}
    assert r["ct"]["valid_operators"] == 0 and [s["valid"] for s in r["ct"]["scts"]] == [False] * 3


# ---- unexpected_issuer through real exchanges


def test_public_ct_logged_chain_is_unexpected_issuer(public: PublicLab, lab_dir: Path) -> None:
    profile = public.profile(lab_dir)
    with LabServer(Mail("smtp", server_context(public.logged, [public.ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", profile)
    assert r.verdict is Verdict.UNEXPECTED_ISSUER, r.analysis.findings
    assert not r.verdict.is_interception and r.analysis.interceptor is None
    assert {"unexpected_issuer", "sct_valid"} <= codes(r) and "chain_not_anchored" not in codes(r)
    assert r.analysis.ct is not None and r.analysis.ct.valid_operators == 2
    assert r.to_dict()["ct"]["valid_operators"] == 2


def test_strict_profile_keeps_unexpected_issuer_intercepted(public: PublicLab, lab_dir: Path) -> None:
    profile = public.profile(lab_dir, "unexpected_issuer: intercepted\n")
    with LabServer(Mail("smtp", server_context(public.logged, [public.ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", profile)
    assert r.verdict is Verdict.INTERCEPTED and "unexpected_issuer" in codes(r)


def test_one_sct_signed_by_another_key_is_intercepted(public: PublicLab, lab_dir: Path) -> None:
    profile = public.profile(lab_dir)
    with LabServer(Mail("smtp", server_context(public.one_forged_sct, [public.ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", profile)
    assert r.verdict is Verdict.INTERCEPTED and "sct_invalid" in codes(r)
    assert r.analysis.ct is not None and [s.valid for s in r.analysis.ct.scts] == [True, False]


def test_lab_forgery_with_copied_scts_is_intercepted(public: PublicLab, lab_dir: Path, pki: LabPKI) -> None:
    """A forger copies the SCTs of the publicly logged leaf onto its own certificate."""
    profile = public.profile(lab_dir)
    fake = ctlog.copy_scts(public.logged.cert, pki.unknown_ca, NAMES)
    with LabServer(Mail("smtp", server_context(fake, [pki.unknown_ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", profile)
    assert r.verdict is Verdict.INTERCEPTED and "sct_invalid" in codes(r)
    assert r.analysis.interceptor is not None and "Contoso" in r.analysis.interceptor.ca_subject


def test_public_chain_without_two_operators_is_intercepted(public: PublicLab, lab_dir: Path) -> None:
    profile = public.profile(lab_dir)
    one = ctlog.issue_with_scts(public.ca, NAMES, public.logs[:1])
    with LabServer(Mail("smtp", server_context(one, [public.ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", profile)
    assert r.verdict is Verdict.INTERCEPTED and "publicly_trusted_without_ct" in codes(r)


# ---- membership by signatures


def test_leaf_valid_only_before_its_issuer_is_certificate_invalid(
    pki: LabPKI, lab_profile: TrustProfile
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = make_ca(
        _name("relaywatch Lab TLS CA OCSP 09"), pki.root, days=1000, not_before=now - dt.timedelta(days=100)
    )
    leaf = make_leaf(ca, ("localhost", "127.0.0.1"), not_before=now - dt.timedelta(days=400), days=200)
    with LabServer(Mail("smtp", server_context(leaf, [ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.CERTIFICATE_INVALID, r.analysis.findings
    assert r.analysis.interceptor is None and "certificate_expired" in codes(r)
    assert [c.expected for c in r.analysis.chain] == [True, True]
    assert r.analysis.validated_path[-1].startswith("CN=relaywatch Lab TLS Root G2")
    assert any("expired before its issuer" in f.message for f in r.analysis.findings)


def test_profile_intermediate_is_never_the_interceptor(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """A forged leaf presented with the profile's own intermediate: the intermediate stays expected, and
    the interceptor named is the CA whose key signed, not the profile's CA."""
    fake = make_leaf(pki.unknown_ca, NAMES)
    with LabServer(Mail("smtp", server_context(fake, [pki.issuing, pki.unknown_ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.INTERCEPTED
    assert [c.expected for c in r.analysis.chain] == [False, True, False]
    assert r.analysis.interceptor is not None and "Contoso" in r.analysis.interceptor.ca_subject


# ---- session: authentication and ciphers


def test_auth_offered_before_starttls(pki: LabPKI, lab_profile: TrustProfile) -> None:
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]), auth_before_tls=True)) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert "auth_offered_before_tls" in codes(r)
    f = next(f for f in r.analysis.findings if f.code == "auth_offered_before_tls")
    assert f.severity == "critical" and "LOGIN" in f.message and f.verdict is None


def test_auth_mechanisms_against_profile(pki: LabPKI, lab_dir: Path, tmp_path: Path) -> None:
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as s:

        def prof(mechs: str) -> TrustProfile:
            path = tmp_path / f"p{len(mechs)}.yml"
            path.write_text(
                f"name: lab\nanchors: [{lab_dir / 'root.pem'}]\nintermediates: [{lab_dir / 'issuing.pem'}]\n"
                f"names: [localhost]\nauth_after_tls: {{{s.port}: [{mechs}]}}\n"
            )
            return load_profile(str(path))

        [same] = probe(f"smtp://127.0.0.1:{s.port}", prof("LOGIN, XOAUTH2"))
        [other] = probe(f"smtp://127.0.0.1:{s.port}", prof("XOAUTH2"))
    assert "auth_mechanisms_unexpected" not in codes(same) and same.verdict is Verdict.OK
    assert "auth_mechanisms_unexpected" in codes(other) and other.verdict is Verdict.OK


def test_weak_cipher_below_modern_is_downgraded(pki: LabPKI, lab_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "modern.yml"
    path.write_text(
        f"name: lab\nanchors: [{lab_dir / 'root.pem'}]\nintermediates: [{lab_dir / 'issuing.pem'}]\n"
        'names: [localhost]\nmin_tls_version: "1.0"\nmin_cipher: modern\n'
    )
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing], tls_max="1.0"))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", load_profile(str(path)))
    assert r.verdict is Verdict.TLS_DOWNGRADED and "cipher_weak" in codes(r)
    assert "tls_version_below_minimum" not in codes(r)
