"""A public root program (default: certifi's copy of Mozilla's), to tell a CA change from interception.

A chain that misses the profile's anchors but validates against the public roots for the target name, with
SCTs from independent logs, is a publicly trusted, CT-logged certificate: the operator may have changed CAs
(Microsoft did in 2018, 2021 and 2026) or a public CA mis-issued. Loaded once per file and modification time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.x509.verification import Store
from relaywatch.analysis.profile_ref import ProfileError
from relaywatch.analysis.truststore import _read
from relaywatch.filestamp import file_key


@dataclass(frozen=True, slots=True, eq=False)
class PublicRoots:
    source: str
    certificates: tuple[x509.Certificate, ...]
    store: Store


def default_path() -> Path:
    return Path(certifi.where())


def public_roots(path: str | Path | None = None) -> PublicRoots:
    p = Path(path) if path is not None else default_path()
    try:
        return _load(*file_key(p))
    except OSError as exc:
        raise ProfileError(f"public roots {p}: {exc.strerror}") from exc


@functools.lru_cache(maxsize=8)
def _load(path: str, _stamp: int) -> PublicRoots:
    certs = _read([Path(path)])
    if not certs:
        raise ProfileError(f"public roots {path}: no usable PEM certificate")
    return PublicRoots(path, tuple(certs), Store(certs))
