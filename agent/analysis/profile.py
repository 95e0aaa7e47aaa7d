"""Trust profiles: what a legitimate chain for a relay looks like, as a YAML file with PEM files beside it."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import Store
from relaywatch.analysis.certs import fingerprint, spki_sha256, subject_string
from relaywatch.analysis.ct import CTError, LogList, load_log_list
from relaywatch.analysis.digest import sha256_hasher
from relaywatch.analysis.membership import Pool
from relaywatch.analysis.profile_ref import ProfileError, ProfileRef
from relaywatch.analysis.publicroots import PublicRoots, public_roots
from relaywatch.datadir import PROFILES
from relaywatch.yamlsafe import problem, safe_load

TLS_VERSIONS = {"1.0": 10, "1.1": 11, "1.2": 12, "1.3": 13}
# OpenSSL's names for the negotiated version -> the profile's spelling
NEGOTIATED = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3", "SSLv3": "0.3"}


@dataclass(frozen=True, slots=True, eq=False)
class TrustProfile:
    name: str
    version: str
    source: str
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    names: tuple[str, ...]  # empty: the target host only
    min_tls_version: str
    require_starttls: bool
    store: Store
    digest: str  # SHA-256 over the YAML and the PEM files, in order
    known: frozenset[str]  # anchors' and intermediates' fingerprints: presented copies count as expected
    pool: Pool  # anchors and intermediates for chain membership by signature
    known_names: frozenset[tuple[str, str]]  # (SPKI SHA-256, subject) of anchors and intermediates
    ct_logs: LogList
    public_roots_path: str | None  # None: certifi's bundle
    strict_unexpected_issuer: bool  # `unexpected_issuer: intercepted`: a foreign public CA still pages
    auth_after_tls: dict[int, frozenset[str]]  # port -> SASL mechanisms expected after TLS
    min_cipher: str  # compatible | modern

    def public_roots(self) -> PublicRoots:
        """Loaded on first need (only chains that miss the profile's anchors are checked against it)."""
        return public_roots(self.public_roots_path)

    def is_known(self, cert: x509.Certificate) -> bool:
        """In the profile, by fingerprint or by key and name (a cross-signed or re-issued copy)."""
        return (
            fingerprint(cert) in self.known or (spki_sha256(cert), subject_string(cert)) in self.known_names
        )

    def ref(self) -> ProfileRef:
        subjects = tuple(a.subject.rfc4514_string() for a in self.anchors)
        return ProfileRef(self.name, self.version, self.source, subjects, self.digest)

    def tls_version_ok(self, negotiated: str) -> bool:
        version = NEGOTIATED.get(negotiated)
        return version is not None and version >= self.min_tls_version


def builtin_dir() -> Path:
    return PROFILES


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yml"))


def load_profile(spec: str) -> TrustProfile:
    """`spec` is a built-in name or a path to a YAML file."""
    shown = spec if len(spec) <= 80 else spec[:77] + "..."
    path = Path(spec)
    if not _is_file(path):
        candidate = builtin_dir() / f"{spec}.yml"
        if os.sep in spec or spec.endswith((".yml", ".yaml")) or not _is_file(candidate):
            builtin = ", ".join(builtin_names())
            raise ProfileError(f"profile {shown!r}: no such file or built-in profile (built-in: {builtin})")
        path = candidate
    try:
        return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)
    except OSError as exc:
        raise ProfileError(f"profile {shown!r}: {exc.strerror}") from None


def _is_file(path: Path) -> bool:
    """False for names the file system refuses (too long, NUL), not an OSError."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, _mtime: int) -> TrustProfile:
    return _parse(Path(path))


def _parse(path: Path) -> TrustProfile:
    where = str(path)
    try:
        raw = path.read_bytes()
        doc = safe_load(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{where}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark else ""
        raise ProfileError(f"{where}:{line} invalid YAML: {problem(exc)}") from exc
    if not isinstance(doc, dict):
        raise ProfileError(f"{where}: expected a mapping with name, version, anchors")
    name = _string(doc, "name", where, required=True)
    version = str(doc.get("version", ""))
    digest = sha256_hasher()
    digest.update(raw)
    anchors = _certs(doc, "anchors", path, required=True, digest=digest)
    intermediates = _certs(doc, "intermediates", path, required=False, digest=digest)
    names = doc.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ProfileError(f"{where}: 'names' must be a list of host names")
    min_tls = str(doc.get("min_tls_version", "1.2"))
    if min_tls not in TLS_VERSIONS:
        raise ProfileError(f"{where}: min_tls_version {min_tls!r} is not one of {', '.join(TLS_VERSIONS)}")
    require = doc.get("require_starttls", True)
    if not isinstance(require, bool):
        raise ProfileError(f"{where}: require_starttls must be true or false")
    ct_path, roots_path = _path(doc, "ct_logs", path), _path(doc, "public_roots", path)
    try:
        ct_logs = load_log_list(ct_path)
    except CTError as exc:
        raise ProfileError(f"{where}: ct_logs: {exc}") from exc
    if ct_path is not None:
        digest.update(bytes.fromhex(ct_logs.digest))
    if roots_path is not None:
        public_roots(roots_path)  # fail at load, not at the first foreign chain
        digest.update(Path(roots_path).read_bytes())
    strict = doc.get("unexpected_issuer", "unexpected_issuer")
    if strict not in ("unexpected_issuer", "intercepted"):
        raise ProfileError(f"{where}: unexpected_issuer must be 'unexpected_issuer' or 'intercepted'")
    min_cipher = str(doc.get("min_cipher", "compatible"))
    if min_cipher not in ("compatible", "modern"):
        raise ProfileError(f"{where}: min_cipher must be 'compatible' or 'modern'")
    return TrustProfile(
        name=name,
        version=version,
        source=where,
        anchors=tuple(anchors),
        intermediates=tuple(intermediates),
        names=tuple(n.lower().rstrip(".") for n in names),
        min_tls_version=min_tls,
        require_starttls=require,
        store=Store(anchors),
        digest=digest.finalize().hex(),
        known=frozenset(fingerprint(c) for c in [*anchors, *intermediates]),
        pool=Pool.of(anchors, intermediates),
        known_names=frozenset(
            (spki_sha256(c), c.subject.rfc4514_string()) for c in [*anchors, *intermediates]
        ),
        ct_logs=ct_logs,
        public_roots_path=roots_path,
        strict_unexpected_issuer=strict == "intercepted",
        auth_after_tls=_auth(doc, where),
        min_cipher=min_cipher,
    )


def _path(doc: dict[str, Any], key: str, profile: Path) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ProfileError(f"{profile}: '{key}' must be a file path")
    return str((profile.parent / value).resolve())


def _auth(doc: dict[str, Any], where: str) -> dict[int, frozenset[str]]:
    """`auth_after_tls: {587: [LOGIN, XOAUTH2]}`: the mechanisms the relay offers after TLS, per port."""
    value = doc.get("auth_after_tls") or {}
    ok = isinstance(value, dict) and all(
        isinstance(k, int) and isinstance(v, list) and all(isinstance(m, str) for m in v)
        for k, v in value.items()
    )
    if not ok:
        raise ProfileError(f"{where}: auth_after_tls must map ports to lists of SASL mechanisms")
    return {int(k): frozenset(m.upper() for m in v) for k, v in value.items()}


def _string(doc: dict[str, Any], key: str, where: str, required: bool) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise ProfileError(f"{where}: '{key}' must be a non-empty string")
    return value


def _certs(
    doc: dict[str, Any], key: str, path: Path, required: bool, digest: hashes.Hash
) -> list[x509.Certificate]:
    entries = doc.get(key) or []
    if not isinstance(entries, list) or (required and not entries):
        raise ProfileError(f"{path}: '{key}' must be a {'non-empty ' if required else ''}list of PEM files")
    certs: list[x509.Certificate] = []
    for entry in entries:
        file = (path.parent / str(entry)).resolve()
        try:
            pem = file.read_bytes()
            digest.update(pem)
            certs.extend(x509.load_pem_x509_certificates(pem))
        except OSError as exc:
            raise ProfileError(f"{path}: {key} entry {entry!r}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ProfileError(f"{path}: {key} entry {entry!r}: not a PEM certificate ({exc})") from exc
    return certs


def profile_ref(spec: str) -> ProfileRef:
    """In-process loader for the agent's config (the agent itself asks its probe worker instead)."""
    return load_profile(spec).ref()
