"""SHA-256 and SHA-512 for the probe worker, through the OpenSSL that cryptography carries.

hashlib would load the system's libcrypto into the worker beside cryptography's own OpenSSL: with the
ssl module, which it shares, that is about 4.7 MB of the worker's PSS (measured on one import of the
worker's modules). hashlib's builtin fallback is slower (9 us against 4 us here for a 1.5 kB certificate).
The agent's main process hashes nothing (basic auth aside: run/webconfig.py), so it has neither."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes


def sha256(data: bytes) -> bytes:
    return _digest(hashes.SHA256(), data)


def sha512(data: bytes) -> bytes:
    return _digest(hashes.SHA512(), data)


def sha256_hasher() -> hashes.Hash:
    """For a digest of several pieces (a trust profile and the certificate files it names)."""
    return hashes.Hash(hashes.SHA256())


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()
