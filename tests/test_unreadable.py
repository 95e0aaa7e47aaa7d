"""Certificates that arrive but do not make a TLS session: the chain is kept and judged.

A hand-rolled TLS 1.2 server (agent/lab/hostile.py) sends its ServerHello and Certificate, then closes or
stalls; certificates with T.61, BMP and Universal strings, a NUL, a very long name, or an encoding OpenSSL
refuses go on the wire exactly as built."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.hostile import hostile
from relaywatch.lab.pki import Issued, LabPKI, _name, make_ca, make_leaf
from relaywatch.model import Verdict
from relaywatch.probe.tls import certificates_in_records

from tests.support import probe

pytestmark = pytest.mark.peers

NAMES = ("localhost", "127.0.0.1")


def der(issued: Issued) -> bytes:
    return issued.cert.public_bytes(Encoding.DER)


def _attr(oid: x509.ObjectIdentifier, value: str, kind: _ASN1Type | None = None) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value, _type=kind) if kind else x509.NameAttribute(oid, value)


def forged_names() -> dict[str, x509.Name]:
    cn, o, ou = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
    return {
        "t61": x509.Name(
            [_attr(o, "Inspect AG", _ASN1Type.T61String), _attr(cn, "Inspect Root", _ASN1Type.T61String)]
        ),
        "bmp": x509.Name([_attr(cn, "Inspect Root ΩΣ", _ASN1Type.BMPString)]),
        "universal": x509.Name([_attr(cn, "Inspect Root 🔒", _ASN1Type.UniversalString)]),
        "nul": x509.Name([_attr(cn, "Inspect\x00Root")]),
        "long": x509.Name(
            [_attr(ou, f"unit {i} " + "x" * 50) for i in range(60)] + [_attr(cn, "Inspect Root")]
        ),
    }


def surrogate_bmp(issued: Issued) -> bytes:
    """The leaf with its BMPString CN rewritten to UTF-16 surrogates (same length): OpenSSL refuses to
    parse it in the handshake, cryptography refuses to load it; only the bytes remain."""
    raw = der(issued)
    i = raw.find(b"\x1e\x04\x00A\x00B")
    assert i > 0
    return raw[: i + 2] + b"\xd8\x00\xd8\x00" + raw[i + 6 :]


@pytest.mark.parametrize("name", sorted(forged_names()))
@pytest.mark.parametrize("ending", ["cert_then_close", "cert_then_stall"])
def test_forged_chain_with_odd_names_is_intercepted_with_chain(
    name: str, ending: str, lab_profile: TrustProfile
) -> None:
    ca = make_ca(forged_names()[name])
    leaf = make_leaf(ca, NAMES, subject=forged_names()[name] if name != "long" else None)
    chain = [der(leaf), der(ca)]
    with hostile(ending, chain_der=chain) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile, timeout=2.0)
    assert r.record.tls is not None and list(r.record.tls.chain_der) == chain
    assert r.verdict is Verdict.INTERCEPTED, r.analysis.findings
    assert len(r.analysis.chain) == 2 and r.analysis.interceptor is not None


def test_certificate_no_library_loads_is_intercepted_with_raw_chain(lab_profile: TrustProfile) -> None:
    ca = make_ca(_name("Inspect Root"))
    leaf = make_leaf(ca, NAMES, subject=x509.Name([_attr(NameOID.COMMON_NAME, "AB", _ASN1Type.BMPString)]))
    chain = [surrogate_bmp(leaf), der(ca)]
    with hostile("cert_then_close", chain_der=chain) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile, timeout=2.0)
    assert r.record.tls is not None and list(r.record.tls.chain_der) == chain
    assert r.verdict is Verdict.INTERCEPTED
    codes = {f.code for f in r.analysis.findings}
    assert {"certificate_unparsable", "no_certificate"} <= codes
    assert len(r.to_dict()["presented_pem"]) == 2  # the raw evidence, kept


@pytest.mark.parametrize("ending", ["cert_then_close", "cert_then_stall"])
def test_genuine_chain_kept_when_peer_closes_or_stalls(
    ending: str, pki: LabPKI, lab_profile: TrustProfile
) -> None:
    """Issue 10 item 5: an EOF or a timeout after the Certificate message used to lose the chain."""
    chain = [der(pki.relay), der(pki.issuing)]
    with hostile(ending, chain_der=chain) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile, timeout=2.0)
    assert r.record.tls is not None and list(r.record.tls.chain_der) == chain
    assert r.verdict is Verdict.PROTOCOL_ERROR and r.record.failure is not None
    assert r.record.failure.kind == ("tls" if ending == "cert_then_close" else "timeout")
    assert [c.expected for c in r.analysis.chain] == [True, True] and r.analysis.interceptor is None


def test_certificates_in_records_parses_split_and_truncated_flights() -> None:
    from relaywatch.lab.hostile import tls12_server_flight

    big = [b"\x30" + bytes(20000), b"\x30\x01\x02"]
    flight = tls12_server_flight(big)
    assert certificates_in_records(flight) == big
    assert certificates_in_records(flight[:-2])[0] == big[0]  # a cut last certificate keeps what came
    assert certificates_in_records(b"\x17\x03\x03\x00\x05hello") == []  # encrypted: nothing to read
