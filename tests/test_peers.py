"""Through real peers: sslsplit `autossl` re-signing a STARTTLS session, and a real Postfix relay."""

from __future__ import annotations

from pathlib import Path

import pytest
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.pki import LabPKI
from relaywatch.lab.servers import LabServer
from relaywatch.model import StartTLSState, Verdict

from tests.peers import postfix_relay, sslsplit_autossl
from tests.support import free_port, probe, write_pem

pytestmark = pytest.mark.peers


def test_postfix_relay_with_starttls_is_ok(
    tmp_path: Path, lab_dir: Path, lab_profile: TrustProfile, pki: LabPKI
) -> None:
    chain = write_pem(tmp_path / "chain.pem", pki.relay, pki.issuing)
    with postfix_relay(tmp_path, free_port(), chain, lab_dir / "relay.key") as port:
        [r] = probe(f"smtp://127.0.0.1:{port}", lab_profile)
    assert r.verdict is Verdict.OK, r.analysis.findings
    assert r.record.starttls.state is StartTLSState.OFFERED
    assert r.record.transcript[0].text.startswith("220 mx.relaywatch.lab ESMTP")
    assert r.record.tls is not None and r.record.tls.version in ("TLSv1.2", "TLSv1.3")


def test_sslsplit_autossl_is_intercepted(
    tmp_path: Path, lab_dir: Path, lab_profile: TrustProfile, relay: LabServer
) -> None:
    """sslsplit 0.5.5 now and then dies on a connection: a fresh instance per attempt, one retry."""
    for attempt in range(2):
        with sslsplit_autossl(
            tmp_path / f"try{attempt}",
            free_port(),
            relay.port,
            lab_dir / "unknown_ca.pem",
            lab_dir / "unknown_ca.key",
        ) as split:
            [r] = probe(f"smtp://127.0.0.1:{split.port}", lab_profile)
            if r.record.tls is not None or attempt == 1:
                break
            assert not split.alive(), "no TLS session although sslsplit is alive:\n" + split.log_text()
    assert r.record.starttls.state is StartTLSState.OFFERED
    assert r.verdict is Verdict.INTERCEPTED, r.analysis.findings
    i = r.analysis.interceptor
    assert i is not None and "Contoso Corporate Inspection CA" in i.ca_subject
    # sslsplit copies the original subject and names into its forged leaf
    assert r.analysis.chain[0].subject_cn == "smtp.relaywatch.test" and not r.analysis.chain[0].expected


def test_postfix_tls12_preempt_is_ok_never_anonymous(
    tmp_path: Path, lab_dir: Path, lab_profile: TrustProfile
) -> None:
    """Postfix capped at TLS 1.2 and choosing the suite itself: with `ALL` offered it picked an anonymous
    suite (no certificate: a false `intercepted`). The probe must never offer aNULL/eNULL suites."""
    chain = tmp_path / "chain.pem"
    chain.write_bytes((lab_dir / "relay.pem").read_bytes() + (lab_dir / "issuing.pem").read_bytes())
    extra = (
        "tls_preempt_cipherlist = yes\n"
        "smtpd_tls_protocols = >=TLSv1, <=TLSv1.2\n"
        "smtpd_tls_mandatory_protocols = >=TLSv1, <=TLSv1.2\n"
        "smtpd_tls_ciphers = low\n"
        "smtpd_tls_exclude_ciphers =\n"
        "tls_low_cipherlist = aNULL:ALL:@SECLEVEL=0\n"
    )
    with postfix_relay(tmp_path, free_port(), chain, lab_dir / "relay.key", main_cf_extra=extra) as port:
        [r] = probe(f"smtp://127.0.0.1:{port}", lab_profile)
    assert r.record.tls is not None and r.record.tls.version == "TLSv1.2", r.analysis.findings
    assert "ADH" not in r.record.tls.cipher and "AECDH" not in r.record.tls.cipher
    assert r.verdict is Verdict.OK, r.analysis.findings
    assert r.record.tls.chain_der
