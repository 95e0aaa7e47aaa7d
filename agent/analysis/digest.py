"""SHA-256 and SHA-512 for the probe worker, through the OpenSSL that cryptography carries.

hashlib would load the system's libcrypto into the worker beside cryptography's own OpenSSL: with the
ssl module, which it shares, that is about 4.7 MB of the worker's PSS (measured on one import of the
worker's modules). hashlib's builtin fallback is slower (9 us against 4 us here for a 1.5 kB certificate).
The agent's main process hashes nothing (basic auth aside: run/webconfig.py), so it has neither."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes


class Sha256:
    """An incremental SHA-256 with hashlib's update/hexdigest, for digests over several files."""

    def __init__(self, data: bytes = b"") -> None:
        self._hash = hashes.Hash(hashes.SHA256())
        self._hash.update(data)

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.finalize().hex()


def sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def sha512(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA512())
    h.update(data)
    return h.finalize()
