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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509 import verification as v
from relaywatch.analysis.certs import ABSENT_OR_UNREADABLE, dns_names, fingerprint, rfc4514

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

    def attempt(when: dt.datetime, subject: v.Subject) -> list[x509.Certificate]:
        builder = v.PolicyBuilder().store(store).time(when).max_chain_depth(8)
        if permissive:
            builder = builder.extension_policies(ca_policy=_LENIENT_CA, ee_policy=_LENIENT_EE)
        try:
            verifier = builder.build_server_verifier(subject)
        except ValueError as exc:  # the name, not the chain: e.g. "invalid domain name" for a bare "*"
            raise _NameRejected(str(exc)) from exc
        return verifier.verify(leaf, intermediates)

    sent = {fingerprint(c) for c in chain}

    def result(status: PathStatus, path: list[x509.Certificate], error: str = "") -> PathResult:
        completed = tuple(c for c in path[1:-1] if fingerprint(c) not in sent)
        return PathResult(status, tuple(path), error, completed)

    try:  # the common case, one verification: path and the target's own name
        return result(PathStatus.VALID, attempt(at, _subject(host)))
    except (v.VerificationError, ValueError):
        pass
    path, own_name, error = _path_by_own_name(leaf, host, at, attempt)
    if path is None:
        if not explain or own_name is None:
            return PathResult(PathStatus.UNTRUSTED, error=_short(error))
        return _why_not(chain, at, own_name, attempt, error)
    carried = dns_names(leaf)
    for pattern in allowed_names:
        if any(names_overlap(pattern, n) for n in carried):
            return result(PathStatus.VALID, path)
    return result(PathStatus.NAME_MISMATCH, path, f"certificate is not for {host}")


class _NameRejected(ValueError):
    """The verifier refuses to be built for a name: a property of the name, never of the chain."""


_Attempt = Callable[[dt.datetime, v.Subject], list[x509.Certificate]]
_OWN_NAME_TRIES = 4  # verifications spent on the leaf's own names: bounds a hostile leaf's many SANs


def _path_by_own_name(
    leaf: x509.Certificate, host: str, at: dt.datetime, attempt: _Attempt
) -> tuple[list[x509.Certificate] | None, v.Subject | None, str]:
    """Is it the path, or only the name? Asked with a name the leaf itself carries, so that the answer is
    about the path. Names no verifier accepts (an attacker's choice: a bare "*", an underscore, an empty
    label) are skipped without a verification; a name the verifier reads differently from us is retried
    with the next, a few times at most. (path or None, the name that was asked with, the last error)."""
    error, tries = "no name in the leaf that a verifier accepts", 0
    for subject in (*_leaf_subjects(leaf), _host_subject(host)):
        if subject is None:
            continue
        try:
            return attempt(at, subject), subject, ""
        except _NameRejected as exc:
            error = f"the verifier rejects a name of the leaf: {exc}"
            continue
        except v.VerificationError as exc:
            error, tries = str(exc), tries + 1
            if "subjectAltName" in error and tries < _OWN_NAME_TRIES:
                continue  # only the name did not match: ask again with another
            return None, subject, error
        except ValueError as exc:  # the verifier could not read the leaf (its names, most likely)
            return None, None, f"the verifier cannot read the leaf: {exc}"
    return None, None, error


def _why_not(
    chain: Sequence[x509.Certificate], at: dt.datetime, own_name: v.Subject, attempt: _Attempt, error: str
) -> PathResult:
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
    except (v.VerificationError, ValueError):
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


def _subject(host: str) -> v.Subject:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _leaf_subjects(leaf: x509.Certificate) -> tuple[v.Subject, ...]:
    """Names the leaf carries, as the verifier is asked for them: a wildcard by a name it covers; a DNS name
    that looks like an address stays a DNS name (it never matches an IP SAN)."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except ABSENT_OR_UNREADABLE:
        return ()
    out: list[v.Subject] = []
    for name in san.get_values_for_type(x509.DNSName):
        try:
            out.append(x509.DNSName("relaywatch-probe" + name[1:] if name.startswith("*.") else name))
        except ValueError:  # not an A-label string: no verifier would match it
            continue
    for ip in san.get_values_for_type(x509.IPAddress):
        out.append(x509.IPAddress(ip))
    return tuple(out)


def _host_subject(host: str) -> v.Subject | None:
    try:
        return _subject(host)
    except ValueError:
        return None


def _short(error: str) -> str:
    """cryptography appends the whole certificate repr; the reason is what a person reads."""
    return error.split(" (encountered processing", 1)[0].removeprefix("validation failed: ")
