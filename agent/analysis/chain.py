"""Path validation with cryptography's verifier: to the profile's anchors, and to this host's trust store.

The questions are asked in an order that separates the causes a user must tell apart: does the chain
lead to the anchors at all (no: interception), is the leaf valid now (no: expired), is it for this
name (no: wrong certificate).
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import functools
import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509 import verification as v
from relaywatch.analysis.certs import dns_names, fingerprint, rfc4514

# What a local OpenSSL client would accept: any extensions, as long as CAs say they are CAs.
_LENIENT_CA = v.ExtensionPolicy.permit_all().require_present(
    x509.BasicConstraints, v.Criticality.AGNOSTIC, None
)
_LENIENT_EE = v.ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, v.Criticality.AGNOSTIC, None
)


class PathStatus(enum.StrEnum):
    VALID = "valid"
    NAME_MISMATCH = "name_mismatch"
    EXPIRED = "expired"  # the leaf
    NOT_YET_VALID = "not_yet_valid"  # the leaf
    CHAIN_EXPIRED = "chain_expired"  # an intermediate
    UNTRUSTED = "untrusted"  # no path to the anchors: interception, or a foreign CA
    NO_CERTIFICATE = "no_certificate"


@dataclass(frozen=True, slots=True)
class PathResult:
    status: PathStatus
    path: tuple[x509.Certificate, ...] = ()  # leaf first, anchor last
    error: str = ""
    completed_from: tuple[x509.Certificate, ...] = ()  # intermediates the server did not send


def validate(
    chain: Sequence[x509.Certificate],
    store: v.Store,
    at: dt.datetime,
    host: str,
    allowed_names: Sequence[str] = (),
    extra_intermediates: Sequence[x509.Certificate] = (),
    permissive: bool = False,
    explain: bool = True,
    anchors: tuple[x509.Certificate, ...] = (),
) -> PathResult:
    """explain=False skips telling expiry from distrust (one verification fewer) when only validity counts.

    With `anchors` (the certificates in `store`) the result is memoized: it can only change when `at`
    crosses a not-before/not-after of a certificate involved, so a repeated chain costs no verification
    until then. The agent sees the same chain on every round."""
    if not chain:
        return PathResult(PathStatus.NO_CERTIFICATE, error="no certificate presented")
    if not anchors:
        return _validate(chain, store, at, host, allowed_names, extra_intermediates, permissive, explain)
    key = (
        tuple(fingerprint(c) for c in chain),
        id(store),
        host,
        tuple(allowed_names),
        tuple(fingerprint(c) for c in extra_intermediates),
        permissive,
        explain,
    )
    t = at.timestamp()
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None and hit[3] is store and hit[0] <= t < hit[1]:  # the entry keeps `store` alive
            _memo.move_to_end(key)
            return hit[2]
    result = _validate(chain, store, at, host, allowed_names, extra_intermediates, permissive, explain)
    events = _events(anchors) + _events(tuple(chain)) + _events(tuple(extra_intermediates))
    lo = max((e for e in events if e <= t), default=float("-inf"))
    hi = min((e for e in events if e > t), default=float("inf"))
    with _memo_lock:
        _memo[key] = (lo, hi, result, store)
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return result


_MEMO_SIZE = 512
_memo: collections.OrderedDict[tuple, tuple[float, float, PathResult, v.Store]] = collections.OrderedDict()  # type: ignore[type-arg]
_memo_lock = threading.Lock()


@functools.lru_cache(maxsize=64)
def _events(certs: tuple[x509.Certificate, ...]) -> tuple[float, ...]:
    """The moments at which any of these certificates becomes valid or expires."""
    return tuple(t.timestamp() for c in certs for t in (c.not_valid_before_utc, c.not_valid_after_utc))


def _validate(
    chain: Sequence[x509.Certificate],
    store: v.Store,
    at: dt.datetime,
    host: str,
    allowed_names: Sequence[str],
    extra_intermediates: Sequence[x509.Certificate],
    permissive: bool,
    explain: bool,
) -> PathResult:
    leaf, presented = chain[0], list(chain[1:])
    intermediates = presented + [c for c in extra_intermediates if c not in presented]
    own_name = _leaf_subject(leaf, host)

    def attempt(when: dt.datetime, subject: v.DNSName | v.IPAddress) -> list[x509.Certificate]:
        builder = v.PolicyBuilder().store(store).time(when).max_chain_depth(8)
        if permissive:
            builder = builder.extension_policies(ca_policy=_LENIENT_CA, ee_policy=_LENIENT_EE)
        return builder.build_server_verifier(subject).verify(leaf, intermediates)

    sent = {fingerprint(c) for c in chain}

    def result(status: PathStatus, path: list[x509.Certificate], error: str = "") -> PathResult:
        completed = tuple(c for c in path[1:-1] if fingerprint(c) not in sent)
        return PathResult(status, tuple(path), error, completed)

    try:  # the common case, one verification: path and the target's own name
        return result(PathStatus.VALID, attempt(at, _subject(host)))
    except (v.VerificationError, ValueError):
        pass
    try:  # is it the path, or only the name?
        path = attempt(at, own_name)
    except v.VerificationError as exc:
        if not explain:
            return PathResult(PathStatus.UNTRUSTED, error=_short(str(exc)))
        return _why_not(chain, at, own_name, attempt, str(exc))
    carried = dns_names(leaf)
    for pattern in allowed_names:
        if any(names_overlap(pattern, n) for n in carried):
            return result(PathStatus.VALID, path)
    return result(PathStatus.NAME_MISMATCH, path, f"certificate is not for {host}")


def _why_not(chain, at, own_name, attempt, error: str) -> PathResult:  # type: ignore[no-untyped-def]
    """The path failed now. If it holds at the moment nearest to now at which every presented certificate
    is valid, time is the only problem: an expired leaf, or an expired intermediate."""
    leaf = chain[0]
    lo = max(c.not_valid_before_utc for c in chain)
    hi = min(c.not_valid_after_utc for c in chain)
    second = dt.timedelta(seconds=1)
    if hi - lo <= 2 * second:
        return PathResult(PathStatus.UNTRUSTED, error=_short(error))
    nearest = min(max(at, lo + second), hi - second)
    if nearest == at:  # every certificate is valid now: time is not the problem
        return PathResult(PathStatus.UNTRUSTED, error=_short(error))
    try:
        path = tuple(attempt(nearest, own_name))
    except v.VerificationError:
        return PathResult(PathStatus.UNTRUSTED, error=_short(error))
    if at > leaf.not_valid_after_utc:
        return PathResult(
            PathStatus.EXPIRED, path, f"leaf expired {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if at < leaf.not_valid_before_utc:
        return PathResult(
            PathStatus.NOT_YET_VALID,
            path,
            f"leaf not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        )
    stale = next(
        (c for c in chain[1:] if not c.not_valid_before_utc <= at <= c.not_valid_after_utc), chain[-1]
    )
    return PathResult(
        PathStatus.CHAIN_EXPIRED,
        path,
        f"{rfc4514(stale.subject)} is not valid now (until {stale.not_valid_after_utc:%Y-%m-%d} UTC)",
    )


def names_overlap(a: str, b: str) -> bool:
    """True if a name (or wildcard) in a profile and a name (or wildcard) in a certificate meet."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    for w, n in ((a, b), (b, a)):
        if w.startswith("*.") and "." in n and not n.startswith("*.") and n.split(".", 1)[1] == w[2:]:
            return True
    return False


def _subject(host: str) -> v.DNSName | v.IPAddress:
    try:
        return v.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return v.DNSName(host)


def _leaf_subject(leaf: x509.Certificate, host: str) -> v.DNSName | v.IPAddress:
    """A name the leaf itself carries, so that the first question is about the path, not the name."""
    for name in dns_names(leaf):
        try:
            return v.DNSName("relaywatch-probe" + name[1:]) if name.startswith("*.") else _subject(name)
        except ValueError:  # a name no verifier accepts (an attacker's choice): try the next
            continue
    return _subject(host)


def _short(error: str) -> str:
    """cryptography appends the whole certificate repr; the reason is what a person reads."""
    return error.split(" (encountered processing", 1)[0].removeprefix("validation failed: ")
