"""This host's own trust store (what local mail clients trust), loaded once and reloaded when it changes.

SSL_CERT_FILE / SSL_CERT_DIR when set, as every OpenSSL client honours them; else, on Linux and the
BSDs, the first CA bundle of the table below that exists, else the first CA directory. The table is Go's
(crypto/x509/root_linux.go, what blackbox_exporter reads first) with the OpenSSL defaults of Debian and of
OpenSSL's own build after it. On Windows and macOS, OpenSSL's default paths (ssl module).

Why not ssl.get_default_verify_paths() everywhere: it loads the ssl module and the system's libssl and
libcrypto into the probe worker, which does its TLS with cryptography's own OpenSSL (about 4.7 MB of its
PSS). On this Debian host both find the same certificates (a test checks that).
"""

from __future__ import annotations

import functools
import os
import stat
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import Store
from relaywatch.analysis.certs import spki_sha256

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True, slots=True, eq=False)
class HostStore:
    source: str
    certificates: tuple[x509.Certificate, ...]
    store: Store | None  # None when the host has no trust store at all
    spki: frozenset[str]

    def contains(self, cert: x509.Certificate) -> bool:
        return spki_sha256(cert) in self.spki


_lock = threading.Lock()
_cache: dict[str, tuple[int, HostStore]] = {}


CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/pki/tls/cacert.pem",  # OpenELEC
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # CentOS, RHEL 7 and later
    "/etc/ssl/cert.pem",  # Alpine, Arch, FreeBSD, macOS
    "/usr/lib/ssl/cert.pem",  # Debian's OPENSSLDIR
    "/usr/local/ssl/cert.pem",  # OpenSSL built from source
)
CA_DIRECTORIES = (
    "/etc/ssl/certs",  # Debian, SLES
    "/etc/pki/tls/certs",  # Fedora, RHEL
    "/usr/lib/ssl/certs",
    "/usr/local/ssl/certs",
)


def _located() -> tuple[str, os.stat_result] | None:
    """The store's path and its stat(): the CA file if there is one, else the CA directory (OpenSSL's
    order); on most hosts the first candidate, so one system call."""
    files, directories = _candidates()
    for file in files:
        if file and (st := _stat(file)) is not None and stat.S_ISREG(st.st_mode):
            return file, st
    for directory in directories:
        if directory and (st := _stat(directory)) is not None and stat.S_ISDIR(st.st_mode):
            return directory, st
    return None


def _candidates() -> tuple[tuple[str | None, ...], tuple[str | None, ...]]:
    files, directories = (os.environ.get("SSL_CERT_FILE"),), (os.environ.get("SSL_CERT_DIR"),)
    if sys.platform in ("win32", "darwin"):
        # The table's paths are Unix ones: on Windows /etc/ssl/cert.pem is C:\etc\ssl\cert.pem, a folder
        # any user may create (a planted bundle would make an interceptor "locally trusted"), and macOS
        # Pythons bring an OpenSSL of their own. There, OpenSSL's defaults, as before.
        default_files, default_directories = _openssl_defaults()
        return (*files, *default_files), (*directories, *default_directories)
    return (*files, *CA_FILES), (*directories, *CA_DIRECTORIES)


@functools.cache  # built into OpenSSL: the same for the life of the process
def _openssl_defaults() -> tuple[tuple[str, ...], tuple[str, ...]]:
    import ssl

    p = ssl.get_default_verify_paths()
    return (p.cafile or "", p.openssl_cafile), (p.capath or "", p.openssl_capath)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, or a NUL in an environment variable
        return None


def host_store() -> HostStore:
    """Called on every probe: the stat() that found the store decides whether the cached one is still
    current (a directory's mtime changes when a certificate is added or removed)."""
    found = _located()
    key, stamp = (found[0], found[1].st_mtime_ns) if found else ("", 0)
    with _lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
        where = Path(key)
        if found is None:
            paths: list[Path] = []
        elif stat.S_ISREG(found[1].st_mode):
            paths = [where]
        else:
            paths = sorted(p for p in where.iterdir() if p.is_file())[:5000]
        certs = _read(paths)
        loaded = HostStore(
            source=key or "(none)",
            certificates=tuple(certs),
            store=Store(certs) if certs else None,
            spki=frozenset(spki_sha256(c) for c in certs),
        )
        _cache.clear()
        _cache[key] = (stamp, loaded)
        return loaded


def _read(paths: list[Path]) -> list[x509.Certificate]:
    """One bad entry must not hide the rest of the store: parse certificate by certificate."""
    certs: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for block in data.split(_PEM_BEGIN)[1:]:
            pem = (
                _PEM_BEGIN + block.split(b"-----END CERTIFICATE-----", 1)[0] + b"-----END CERTIFICATE-----\n"
            )
            try:
                with warnings.catch_warnings():  # old roots with odd serials are still roots
                    warnings.simplefilter("ignore")
                    cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                continue
            if pem in seen or not _usable(cert):
                continue
            seen.add(pem)
            certs.append(cert)
    return certs


def _usable(cert: x509.Certificate) -> bool:
    """A root whose key this library cannot load would break every verification against the store."""
    try:
        cert.public_key()
    except Exception:
        return False
    return True
