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
from relaywatch.model import Finding, Severity, Verdict

MAX_DEPTH = 8  # links from the leaf to an anchor, like the verifier's max_chain_depth
MAX_PATHS = 16  # enough to show cross-signed alternatives
# Work one analysis may cost, whatever the chain: a hostile server controls up to 16 certificates, and
# CAs that share a name sign each other into a graph with factorially many simple paths. Real chains
# (the shipped profiles, cross-signed roots) need a few dozen of each; past these the search is cut.
MAX_VISITS = 512  # certificates entered along all branches
MAX_SIGNATURES = 256  # signature verifications (each (certificate, issuer key) pair at most once)
_MEMO_SIZE = 512


@dataclass(frozen=True, slots=True)
class Membership:
    """paths: leaf first, the anchor (or the certificate an anchor's key signed) last. A search cut by the
    budget has no paths (fail closed: a chain too costly to place is not the operator's)."""

    paths: tuple[tuple[x509.Certificate, ...], ...]
    visits: int = 0
    signatures: int = 0
    cut: bool = False

    @property
    def member(self) -> bool:
        return bool(self.paths)

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(fingerprint(c) for p in self.paths for c in p)

    @property
    def finding(self) -> Finding | None:
        """What the verdict must say when the search was cut (None otherwise)."""
        if not self.cut:
            return None
        return Finding(
            "chain_search_cut",
            Severity.CRITICAL,
            f"the search for a path to the profile's roots was cut after {self.visits} certificates and "
            f"{self.signatures} signature checks: the presented CAs sign each other in a maze no relay "
            "needs, so the chain is judged as not the operator's",
            Verdict.INTERCEPTED,
        )


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
    result = _Search(chain, pool).run()
    with _lock:
        _memo[key] = result
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return result


def issuer_of(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The certificate of `pool` whose key signed `cert` (a name match alone can be a spoof)."""
    return next((c for c in pool if c is not cert and signed_by(cert, c)), None)


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


class _Cut(Exception):
    """The budget ran out."""


_Identity = tuple[bytes, str]  # (subject DER, SPKI hash): what a certificate contributes as an issuer


class _Search:
    """Depth-first over issuers, three ways cheaper than over certificates: candidates with one name and
    key are one issuer (a signature check depends on nothing else), so a link is checked once per
    (certificate, issuer key) and a path never returns to an issuer it passed; a certificate from which
    no path exists whatever came before is never entered again; and visits and signature checks share
    one budget per analysis."""

    def __init__(self, chain: Sequence[x509.Certificate], pool: Pool) -> None:
        self.leaf = chain[0]
        self.pool = pool
        self.groups: dict[_Identity, list[x509.Certificate]] = {}
        self.by_subject: dict[x509.Name, list[_Identity]] = {}
        for c in _unique([*chain[1:], *pool.intermediates, *pool.anchors]):
            ident = _identity(c)
            if ident not in self.groups:
                self.groups[ident] = []
                self.by_subject.setdefault(c.subject, []).append(ident)
            self.groups[ident].append(c)
        self.links: dict[tuple[str, _Identity], bool] = {}
        self.dead: set[str] = set()  # fingerprints with no path to an anchor, whatever the path so far
        self.found: list[tuple[x509.Certificate, ...]] = []
        self.visits = 0
        self.signatures = 0

    def run(self) -> Membership:
        try:
            self.walk((self.leaf,), frozenset())
        except _Cut:
            return Membership((), self.visits, self.signatures, cut=True)
        return Membership(tuple(self.found), self.visits, self.signatures)

    def link(self, cert: x509.Certificate, ident: _Identity) -> bool:
        key = (fingerprint(cert), ident)
        hit = self.links.get(key)
        if hit is None:
            self.signatures += 1
            if self.signatures > MAX_SIGNATURES:
                raise _Cut
            hit = self.links[key] = signed_by(cert, self.groups[ident][0])
        return hit

    def walk(self, path: tuple[x509.Certificate, ...], seen: frozenset[_Identity]) -> bool:
        """Collect the paths that extend `path`. True when nothing below was pruned by `path` itself (its
        issuers, its length, the path cap): then finding nothing is a fact about the last certificate,
        remembered in `dead`."""
        cert = path[-1]
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise _Cut
        if spki_sha256(cert) in self.pool.anchor_spki and _is_anchor(cert, self.pool):
            self.found.append(path)
            return True
        if len(path) > MAX_DEPTH:
            return False
        before, complete, own = len(self.found), True, _identity(cert)
        for ident in self.by_subject.get(cert.issuer, ()):
            if ident in seen:
                # Its own issuer again (a self-signed copy) is no loss: whenever a certificate is entered,
                # so is every other with its name and key, and a path that returns to them has a shortcut.
                complete = complete and ident == own
                continue
            if not self.link(cert, ident):
                continue
            for issuer in self.groups[ident]:
                if len(self.found) >= MAX_PATHS:
                    return False
                if fingerprint(issuer) not in self.dead:
                    complete = self.walk((*path, issuer), seen | {ident}) and complete
        if complete and len(self.found) == before:
            self.dead.add(fingerprint(cert))
        return complete


def _identity(cert: x509.Certificate) -> _Identity:
    return cert.subject.public_bytes(), spki_sha256(cert)


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
