"""The probe worker leaves the system's OpenSSL out (run/worker.py): what it does instead must give the
answers the OpenSSL-backed stdlib gives."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relaywatch.analysis import truststore
from relaywatch.analysis.digest import Sha256, sha256, sha512


@given(st.binary(max_size=4096), st.lists(st.binary(max_size=512), max_size=4))
def test_digests_are_hashlibs(data: bytes, more: list[bytes]) -> None:
    assert sha256(data) == hashlib.sha256(data).digest()
    assert sha512(data) == hashlib.sha512(data).digest()
    mine, theirs = Sha256(data), hashlib.sha256(data)
    for chunk in more:
        mine.update(chunk)
        theirs.update(chunk)
    assert mine.hexdigest() == theirs.hexdigest()


def _openssl_location() -> Path | None:
    """What the agent read before: OpenSSL's default file, else its default directory."""
    paths = ssl.get_default_verify_paths()
    for file in (paths.cafile, paths.openssl_cafile):
        if file and Path(file).is_file():
            return Path(file)
    for directory in (paths.capath, paths.openssl_capath):
        if directory and Path(directory).is_dir():
            return Path(directory)
    return None


def test_the_host_store_is_the_one_openssl_would_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    expected = _openssl_location()
    found = truststore.store_location()
    assert (found.resolve() if found else None) == (expected.resolve() if expected else None)


def test_the_host_store_honours_ssl_cert_file_then_ssl_cert_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, directory = tmp_path / "bundle.pem", tmp_path / "certs"
    bundle.write_bytes(b"")
    directory.mkdir()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setattr(truststore, "CA_FILES", ())
    monkeypatch.setattr(truststore, "CA_DIRECTORIES", ())
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    assert truststore.store_location() == directory
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert truststore.store_location() == bundle  # a file comes before a directory, as in OpenSSL
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    assert truststore.store_location() == directory
    monkeypatch.delenv("SSL_CERT_DIR")
    assert truststore.store_location() is None


def test_the_worker_hashes_and_verifies_without_the_systems_openssl() -> None:
    """In a fresh interpreter that imports the worker: no _hashlib, _ssl or bcrypt, and cryptography's
    hashing and hmac (which import hashlib) still work on their builtin fallbacks."""
    code = (
        "import relaywatch.run.worker, relaywatch.host.inventory, sys, hashlib, hmac\n"
        "from cryptography.hazmat.primitives import constant_time\n"
        "assert hashlib.sha1(b'x').hexdigest() == '11f6ad8ec52a2984abaafd7c3b516503785c2072'\n"
        "assert constant_time.bytes_eq(b'a', b'a') and hmac.compare_digest(b'a', b'a')\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(sorted(m for m in ('_hashlib', '_ssl', 'bcrypt') if sys.modules.get(m)))\n"
        "print('libcrypto.so' in maps or 'libssl.so' in maps)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "SSL_CERT_FILE": ""},
    ).stdout.split("\n")
    assert out[:2] == ["[]", "False"]
