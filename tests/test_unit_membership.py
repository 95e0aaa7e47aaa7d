"""Membership search under hostile chains: CAs that share a name sign each other into a graph with
factorially many simple paths. The search's own counters (visits, signature checks) show the work is
bounded; a search cut by its budget is not a member, so the chain is judged intercepted."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from relaywatch.analysis.membership import MAX_SIGNATURES, MAX_VISITS, membership
from relaywatch.analysis.profile import TrustProfile
from relaywatch.lab.pki import LAB_NAMES, Issued, LabPKI, _name, make_leaf
from relaywatch.model import Verdict

from tests.support import codes, judged, record

NOW = dt.datetime.now(dt.UTC)
Key = ec.EllipticCurvePrivateKey


def ca(name: x509.Name, key: Key, signer: Key, issuer: x509.Name, serial: int) -> x509.Certificate:
    """A CA certificate for `key` under `name`, signed by `signer` as `issuer`."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


@pytest.mark.timeout(30)
def test_fifteen_same_name_same_key_cas_are_one_issuer(lab_profile: TrustProfile) -> None:
    """The reviewer's maze at the probe's chain limit (16): before, 15·14 + 15 = 225 signature checks and
    about 3·10^8 visits (hours of CPU); now one issuer, one link check per certificate at most."""
    key, name = ec.generate_private_key(ec.SECP256R1()), _name("Loop CA")
    cas = [ca(name, key, key, name, i + 1) for i in range(15)]
    leaf = make_leaf(Issued(cas[0], key), LAB_NAMES)
    r = judged(record(leaf, *cas), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED and "chain_not_anchored" in codes(r)
    m = membership([leaf.cert, *cas], lab_profile.pool)
    assert not m.member and not m.cut
    assert m.signatures <= 2 and m.visits <= 1 + len(cas)


@pytest.mark.timeout(30)
def test_a_maze_past_the_budget_is_cut_and_intercepted(lab_profile: TrustProfile) -> None:
    """Six keys under one name, each certified by every other: too many paths to walk, so the search
    stops at its budget and fails closed, with a finding that says so."""
    name = _name("Maze CA")
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(6)]
    cas = [
        ca(name, k, s, name, 100 * i + j) for i, k in enumerate(keys) for j, s in enumerate(keys) if i != j
    ]
    leaf = make_leaf(Issued(cas[0], keys[0]), LAB_NAMES)
    m = membership([leaf.cert, *cas], lab_profile.pool)
    assert m.cut and not m.member
    assert m.visits <= MAX_VISITS + 1 and m.signatures <= MAX_SIGNATURES + 1
    assert m.finding is not None and m.finding.verdict is Verdict.INTERCEPTED
    assert "cut" in m.finding.message
    r = judged(record(leaf, *cas), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED and r.analysis.interceptor is not None


@pytest.mark.timeout(30)
def test_a_certificate_without_a_path_is_entered_once(pki: LabPKI, lab_profile: TrustProfile) -> None:
    """Five layers of three keys, each key certified by all three of the layer above, and no anchor on
    top: 3^5 branches, but every dead end is remembered, so each certificate is entered at most once.
    Then one top certificate signed by the lab root makes the same maze a member."""
    layers = [[ec.generate_private_key(ec.SECP256R1()) for _ in range(3)] for _ in range(5)]
    names = [_name(f"Layer {i} CA") for i in range(5)]
    cas = [
        ca(names[i], k, s, names[i + 1], 1 + 1000 * i + 10 * a + b)
        for i in range(4)
        for a, k in enumerate(layers[i])
        for b, s in enumerate(layers[i + 1])
    ]
    tops = [ca(names[4], k, k, names[4], 9000 + a) for a, k in enumerate(layers[4])]
    leaf = make_leaf(Issued(cas[0], layers[0][0]), LAB_NAMES)
    m = membership([leaf.cert, *cas, *tops], lab_profile.pool)
    assert not m.member and not m.cut and m.visits <= 1 + len(cas) + len(tops)
    bridge = ca(names[4], layers[4][2], pki.root.key, pki.root.cert.subject, 9999)
    m = membership([leaf.cert, *cas, *tops, bridge], lab_profile.pool)
    assert m.member and not m.cut and all(p[-2] == bridge for p in m.paths)


def test_the_relays_chain_with_a_maze_appended_is_still_the_operators(
    pki: LabPKI, lab_profile: TrustProfile
) -> None:
    key, name = ec.generate_private_key(ec.SECP256R1()), _name("Loop CA")
    junk = [ca(name, key, key, name, i + 1) for i in range(13)]
    m = membership([pki.relay.cert, pki.issuing.cert, *junk], lab_profile.pool)
    assert m.member and not m.cut
    assert judged(record(pki.relay, pki.issuing, *junk), lab_profile).verdict is Verdict.OK
