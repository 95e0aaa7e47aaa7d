"""Whose chain is it? Decided by names and signatures only, never by validity times or extension policy.

A verifier answers "is this chain valid now"; a monitor must first answer "does this chain belong to the
relay operator's CAs". The two differ exactly where a false alarm hurts: a leaf whose validity began before
its issuer's (no instant at which both are valid) is the operator's expired certificate, not
interception. So: every path from the leaf through the presented certificates and the profile's
intermediates up to a profile anchor, each link an issuer/subject match plus a verified signature.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from relaywatch.analysis.certs import fingerprint, spki_sha256

MAX_DEPTH = 8  # links from the leaf to an anchor, like the verifier's max_chain_depth
MAX_PATHS = 16  # enough to show cross-signed alternatives; bounds the work a hostile chain can cause
_MEMO_SIZE = 512


@dataclass(frozen=True, slots=True)
class Membership:
    """paths: leaf first, the anchor (or the certificate an anchor's key signed) last."""

    paths: tuple[tuple[x509.Certificate, ...], ...]

    @property
    def member(self) -> bool:
        return bool(self.paths)

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(fingerprint(c) for p in self.paths for c in p)


@dataclass(frozen=True, slots=True, eq=False)
class Pool:
    """The profile's certificates, with their key hashes computed once (a profile is loaded once)."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    anchor_spki: frozenset[str]
    known_spki: frozenset[str]  # anchors and intermediates: never "the interceptor", never unexpected

    @staticmethod
    def of(anchors: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate]) -> Pool:
        return Pool(
            tuple(anchors),
            tuple(intermediates),
            frozenset(spki_sha256(a) for a in anchors),
            frozenset(spki_sha256(c) for c in (*anchors, *intermediates)),
        )


_memo: collections.OrderedDict[tuple[object, ...], Membership] = collections.OrderedDict()
_lock = threading.Lock()


def membership(chain: Sequence[x509.Certificate], pool: Pool) -> Membership:
    """Memoized per (chain, pool): signatures are verified once per distinct chain."""
    if not chain:
        return Membership(())
    key = (tuple(fingerprint(c) for c in chain), id(pool))
    with _lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
            return hit
    result = Membership(tuple(_paths(chain, pool)))
    with _lock:
        _memo[key] = result
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return result


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Issuer name equals subject and the issuer's key verifies the signature (any key type the library
    can load; anything else, including an attacker's odd algorithm, is simply not a link)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _paths(chain: Sequence[x509.Certificate], pool: Pool) -> list[tuple[x509.Certificate, ...]]:
    anchors_by_spki = pool.anchor_spki
    candidates = _unique([*chain[1:], *pool.intermediates, *pool.anchors])
    found: list[tuple[x509.Certificate, ...]] = []
    checked: dict[tuple[str, str], bool] = {}

    def link(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        k = (fingerprint(cert), fingerprint(issuer))
        if k not in checked:
            checked[k] = signed_by(cert, issuer)
        return checked[k]

    def walk(path: tuple[x509.Certificate, ...]) -> None:
        cert = path[-1]
        if len(found) >= MAX_PATHS:
            return
        if spki_sha256(cert) in anchors_by_spki and _is_anchor(cert, pool):
            found.append(path)
            return
        if len(path) > MAX_DEPTH:
            return
        seen = {fingerprint(c) for c in path}
        for issuer in candidates:
            if fingerprint(issuer) in seen or issuer.subject != cert.issuer:
                continue
            if link(cert, issuer):
                walk((*path, issuer))

    walk((chain[0],))
    return found


def _is_anchor(cert: x509.Certificate, pool: Pool) -> bool:
    """A certificate carrying an anchor's key and name is that anchor (a re-issued or cross-signed copy of a
    root is still the root: trust rests on the key)."""
    spki = spki_sha256(cert)
    return any(spki_sha256(a) == spki and a.subject == cert.subject for a in pool.anchors)


def _unique(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    out: dict[str, x509.Certificate] = {}
    for c in certs:
        out.setdefault(fingerprint(c), c)
    return list(out.values())
