"""Every verdict and STARTTLS state, each from a real exchange with a lab server on loopback."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import pytest
from relaywatch.addresses import AddressFamily
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.pki import LabPKI, make_ca, make_leaf
from relaywatch.lab.proxies import Resigner, Stripper
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.model import StartTLSState, Verdict
from relaywatch.pipeline import check
from relaywatch.probe.options import ProbeOptions
from relaywatch.target import parse_target

from tests.support import StaticHosts, cn_name, codes, probe

pytestmark = pytest.mark.peers


def test_clean_relay_is_ok_with_evidence(relay: LabServer, lab_profile: TrustProfile) -> None:
    [r] = probe(f"smtp://127.0.0.1:{relay.port}", lab_profile)
    assert r.verdict is Verdict.OK
    assert r.record.starttls.state is StartTLSState.OFFERED
    assert "STARTTLS" in [c.split()[0] for c in r.record.starttls.capabilities]
    assert any(c.startswith("AUTH") for c in r.record.starttls.capabilities_after_tls)
    assert r.record.tls is not None and r.record.tls.version == "TLSv1.3" and r.record.tls.group
    assert [c.expected for c in r.analysis.chain] == [True, True]
    assert r.analysis.validated_path[-1].startswith("CN=relaywatch Lab TLS Root G2")
    sent = [t.text for t in r.record.transcript if t.direction == "C"]
    assert sent[0].startswith("EHLO ") and "STARTTLS" in sent and sent[-1] == "QUIT"
    assert {"connect", "greeting", "capabilities", "starttls", "handshake", "total"} <= set(r.record.timings)


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        ("missing", StartTLSState.MISSING),
        ("masked", StartTLSState.MASKED),
        ("rejected", StartTLSState.REJECTED),
    ],
)
@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
def test_starttls_states_give_stripped(
    pki: LabPKI, lab_profile: TrustProfile, protocol: str, mode: str, state: StartTLSState
) -> None:
    with LabServer(Mail(protocol, server_context(pki.relay, [pki.issuing]), starttls=mode)) as s:
        [r] = probe(f"{protocol}://127.0.0.1:{s.port}", lab_profile)
    assert r.record.starttls.state is state
    assert r.verdict is Verdict.STARTTLS_STRIPPED
    assert r.record.tls is None


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_imap_and_pop3_starttls_ok(pki: LabPKI, lab_profile: TrustProfile, protocol: str) -> None:
    with LabServer(Mail(protocol, server_context(pki.relay, [pki.issuing]))) as s:
        [r] = probe(f"{protocol}://127.0.0.1:{s.port}", lab_profile)
    assert (r.verdict, r.record.starttls.state) == (Verdict.OK, StartTLSState.OFFERED)
    assert r.record.starttls.capabilities_after_tls


@pytest.mark.parametrize("scheme", ["smtps", "imaps", "pop3s"])
def test_implicit_tls_is_not_applicable(pki: LabPKI, lab_profile: TrustProfile, scheme: str) -> None:
    ctx = server_context(pki.relay, [pki.issuing])
    with LabServer(Mail(scheme[:-1], ctx, implicit_tls=True)) as s:
        [r] = probe(f"{scheme}://127.0.0.1:{s.port}", lab_profile)
    assert (r.verdict, r.record.starttls.state) == (Verdict.OK, StartTLSState.NOT_APPLICABLE)
    assert r.record.starttls.capabilities  # the dialogue ran inside TLS


def test_cisco_style_stripper_is_named(relay: LabServer, lab_profile: TrustProfile) -> None:
    with LabServer(Stripper(("127.0.0.1", relay.port))) as mb:
        [r] = probe(f"smtp://127.0.0.1:{mb.port}", lab_profile)
    assert r.verdict is Verdict.STARTTLS_STRIPPED and r.record.starttls.state is StartTLSState.MASKED
    assert "XXXXXXXA" in r.record.starttls.capabilities
    assert r.record.starttls.reply and r.record.starttls.reply.startswith("500 5.5.1")
    assert r.analysis.interceptor is not None and "Cisco ASA" in r.analysis.interceptor.product


def test_resigning_proxy_is_intercepted_and_named(
    pki: LabPKI, relay: LabServer, lab_profile: TrustProfile
) -> None:
    with LabServer(Resigner(("127.0.0.1", relay.port), pki.interception_ca)) as mb:
        [r] = probe(f"smtp://127.0.0.1:{mb.port}", lab_profile)
    assert r.verdict is Verdict.INTERCEPTED
    i = r.analysis.interceptor
    assert i is not None and (i.product, i.kind) == ("Avast", "antivirus")
    assert "Avast Web/Mail Shield Root" in i.ca_subject and len(i.ca_spki_sha256) == 64
    assert not i.trusted_locally
    leaf = r.analysis.chain[0]
    assert leaf.subject_cn == "smtp.relaywatch.test" and not leaf.expected  # subject copied, key new
    assert {"chain_not_anchored", "interceptor_identified", "leaf_freshly_issued"} <= codes(r)
    assert (
        r.record.failure is None and r.record.starttls.capabilities_after_tls
    )  # the whole dialogue, relayed


def test_unknown_interceptor_reports_ca(pki: LabPKI, relay: LabServer, lab_profile: TrustProfile) -> None:
    with LabServer(Resigner(("127.0.0.1", relay.port), pki.unknown_ca)) as mb:
        [r] = probe(f"smtp://127.0.0.1:{mb.port}", lab_profile)
    i = r.analysis.interceptor
    assert r.verdict is Verdict.INTERCEPTED and i is not None and i.product == "unknown"
    assert "Contoso Corporate Inspection CA" in i.ca_subject and len(i.ca_spki_sha256) == 64


def test_locally_trusted_interceptor(
    pki: LabPKI, relay: LabServer, lab_profile: TrustProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "host-store.pem"
    store.write_bytes(pki.interception_ca.cert_pem())
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    with LabServer(Resigner(("127.0.0.1", relay.port), pki.interception_ca)) as mb:
        [r] = probe(f"smtp://127.0.0.1:{mb.port}", lab_profile)
    assert (
        r.verdict is Verdict.INTERCEPTED and r.analysis.interceptor and r.analysis.interceptor.trusted_locally
    )
    assert "interception_trusted_locally" in codes(r)


def test_tls10_only_server_is_downgraded(pki: LabPKI, lab_profile: TrustProfile) -> None:
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing], tls_max="1.0"))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.record.tls is not None and r.record.tls.version == "TLSv1"
    assert r.verdict is Verdict.TLS_DOWNGRADED


@pytest.mark.parametrize(
    ("leaf", "code"),
    [("expired_relay", "certificate_expired"), ("wrong_name_relay", "certificate_name_mismatch")],
)
def test_certificate_invalid(pki: LabPKI, lab_profile: TrustProfile, leaf: str, code: str) -> None:
    with LabServer(Mail("smtp", server_context(getattr(pki, leaf), [pki.issuing]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.CERTIFICATE_INVALID and code in codes(r)


def test_incomplete_chain_completes_from_profile(pki: LabPKI, lab_profile: TrustProfile) -> None:
    with LabServer(Mail("smtp", server_context(pki.relay, []))) as s:  # leaf only
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.OK and "chain_incomplete" in codes(r)


def test_unbundled_sibling_ca_passes_through_root(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """Like Microsoft TLS G2 RSA CA OCSP 16: not in the profile, but under its root."""
    assert pki.sibling.cert not in lab_profile.intermediates
    with LabServer(Mail("smtp", server_context(pki.sibling_relay, [pki.sibling]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.OK and "chain_incomplete" not in codes(r)


def test_anchor_missing_from_host_store_is_a_warning(
    relay: LabServer, lab_profile: TrustProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: LabPKI
) -> None:
    [r] = probe(f"smtp://127.0.0.1:{relay.port}", lab_profile)
    assert r.verdict is Verdict.OK and "anchor_not_trusted_locally" in codes(r)
    store = tmp_path / "store.pem"
    store.write_bytes(pki.root.cert_pem())
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    [r] = probe(f"smtp://127.0.0.1:{relay.port}", lab_profile)
    assert r.verdict is Verdict.OK and "anchor_not_trusted_locally" not in codes(r)


def test_foreign_self_signed_server_is_intercepted(lab_profile: TrustProfile) -> None:
    ca = make_ca(cn_name("Some Self Signed"))
    leaf = make_leaf(ca, ("localhost",))
    with LabServer(Mail("smtp", server_context(leaf, []))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.INTERCEPTED


def test_closed_port_is_unreachable(lab_profile: TrustProfile) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        [r] = probe(f"smtp://127.0.0.1:{port}", lab_profile)
    assert r.verdict is Verdict.UNREACHABLE and r.record.failure and r.record.failure.phase == "connect"


def test_unresolvable_host_is_unreachable(lab_profile: TrustProfile) -> None:
    [r] = probe("smtp://no-such-host.invalid:25", lab_profile)
    assert r.verdict is Verdict.UNREACHABLE and r.record.address is None
    assert r.record.failure and r.record.failure.phase == "resolve"


@pytest.fixture
def dual_stack_name(static_hosts: StaticHosts) -> str:
    """A name with an IPv4 (127.0.0.1) and an IPv6 (::1) address, through the resolver's hosts seam."""
    name = "dual.relaywatch.test"
    static_hosts({name: ["127.0.0.1", "::1"]})
    return name


def test_every_address_is_probed_apart(pki: LabPKI, lab_profile: TrustProfile, dual_stack_name: str) -> None:
    """Interception can differ per address and family: here only the IPv4 path is re-signed."""
    ctx = server_context(pki.relay, [pki.issuing])
    with LabServer(Mail("smtp", ctx), "::1") as v6:
        port = v6.port
        with LabServer(Resigner(("::1", port), pki.interception_ca), "127.0.0.1", port):
            results = probe(f"smtp://{dual_stack_name}:{port}", lab_profile)
            only_v6 = check(
                parse_target(f"smtp://{dual_stack_name}:{port}"),
                lab_profile,
                ProbeOptions(address_family=AddressFamily.V6),
            )
            first = check(
                parse_target(f"smtp://{dual_stack_name}:{port}"),
                lab_profile,
                ProbeOptions(first_address=True),
            )
    by_address = {r.record.address: r.verdict for r in results}
    assert by_address == {"127.0.0.1": Verdict.INTERCEPTED, "::1": Verdict.OK}
    assert [r.record.address for r in only_v6] == ["::1"]
    assert len(first) == 1


def test_expired_intermediate_is_certificate_invalid_not_interception(
    pki: LabPKI, lab_profile: TrustProfile
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    old_ca = make_ca(
        cn_name("relaywatch Lab TLS CA OCSP 05", "relaywatch lab"), pki.root, days=300, not_before=past
    )
    leaf = make_leaf(old_ca, ("localhost", "127.0.0.1"), not_before=past + dt.timedelta(days=1), days=800)
    with LabServer(Mail("smtp", server_context(leaf, [old_ca]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.CERTIFICATE_INVALID and "certificate_chain_expired" in codes(r)
    assert r.analysis.interceptor is None


def test_ehlo_refusal_is_not_stripping(lab_profile: TrustProfile) -> None:
    """Exchange Online throttles with 421 at EHLO: a protocol error, never a STARTTLS finding."""

    def throttled(sock: socket.socket, server: LabServer) -> None:
        sock.sendall(b"220 relay.test ESMTP\r\n")
        sock.recv(512)
        sock.sendall(b"421 4.3.2 Service not available, closing transmission channel\r\n")

    with LabServer(throttled) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    assert r.verdict is Verdict.PROTOCOL_ERROR and r.record.starttls.state is StartTLSState.UNKNOWN
    assert "421 4.3.2" in r.record.failure.message  # type: ignore[union-attr]
