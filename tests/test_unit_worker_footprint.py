"""The probe worker leaves the system's OpenSSL out (run/worker.py): what it does instead must give the
answers the OpenSSL-backed stdlib gives."""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import sys
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st
from relaywatch.analysis import truststore
from relaywatch.analysis.certs import spki_sha256
from relaywatch.analysis.digest import sha256, sha512

from tests.support import modules_without_site


@given(st.binary(max_size=4096))
def test_digests_are_hashlibs(data: bytes) -> None:
    assert sha256(data) == hashlib.sha256(data).digest()
    assert sha512(data) == hashlib.sha512(data).digest()


def _openssl_certificates() -> frozenset[str]:
    """What OpenSSL itself loads from its default paths (the ssl module, not the code under test), as
    SPKI hashes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    paths = ssl.get_default_verify_paths()
    cafile = next((f for f in (paths.cafile, paths.openssl_cafile) if f and Path(f).is_file()), None)
    if cafile is not None:
        ctx.load_verify_locations(cafile=cafile)
        ders = ctx.get_ca_certs(binary_form=True)
    else:  # a directory is read lazily by OpenSSL: each certificate in it, one by one
        capath = next((d for d in (paths.capath, paths.openssl_capath) if d and Path(d).is_dir()), None)
        ders = []
        for p in sorted(Path(capath).iterdir()) if capath else []:
            with contextlib.suppress(ssl.SSLError, OSError):
                one = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                one.load_verify_locations(cafile=str(p))
                ders += one.get_ca_certs(binary_form=True)
    with warnings.catch_warnings():  # a bundle CA with a non-positive serial: read as the agent reads it
        warnings.simplefilter("ignore")
        return frozenset(spki_sha256(x509.load_der_x509_certificate(der)) for der in ders)


def test_the_host_store_holds_the_certificates_openssl_would_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same CAs, not necessarily the same path (a bundle file and the directory of the same CAs)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    expected = _openssl_certificates()
    assert expected and truststore.host_store().spki == expected


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
    assert truststore.host_store().source == str(directory)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert truststore.host_store().source == str(bundle)  # a file comes before a directory, as in OpenSSL
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    assert truststore.host_store().source == str(directory)
    monkeypatch.delenv("SSL_CERT_DIR")
    assert truststore.host_store().source == "(none)"


def test_on_windows_and_macos_the_table_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/etc/ssl/cert.pem would be C:\\etc\\ssl\\cert.pem on Windows, a folder any user may create: a planted
    bundle there must not become this host's trust store. OpenSSL's own defaults decide there."""
    planted = tmp_path / "cert.pem"
    planted.write_bytes(b"")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr(truststore, "CA_FILES", (str(planted),))
    monkeypatch.setattr(truststore, "_openssl_defaults", lambda: ((), ()))
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(sys, "platform", platform)
        assert truststore.host_store().source == "(none)"
    monkeypatch.setattr(sys, "platform", "linux")
    assert truststore.host_store().source == str(planted)


_HASHES_WORK = (
    "import hashlib, hmac\n"
    "from cryptography.hazmat.primitives import constant_time\n"
    "assert hashlib.sha1(b'x').hexdigest() == '11f6ad8ec52a2984abaafd7c3b516503785c2072'\n"
    "assert hashlib.sha256(b'').hexdigest().startswith('e3b0c442') and hashlib.sha384(b'')\n"
    "assert constant_time.bytes_eq(b'a', b'a') and hmac.compare_digest(b'a', b'a')\n"
)


def test_the_worker_hashes_and_verifies_without_the_systems_openssl() -> None:
    """In a fresh interpreter that imports the worker (and its gateway modules): no _hashlib, _ssl or
    bcrypt, and hashlib, hmac and cryptography's hashing still work, on CPython's builtin code."""
    mods = modules_without_site(
        "import relaywatch.run.worker, relaywatch.host.inventory, relaywatch.analysis.dane\n" + _HASHES_WORK
    )
    assert "relaywatch.run.worker" in mods
    assert not {"_hashlib", "_ssl", "bcrypt"} & mods


@pytest.mark.parametrize(
    "missing",
    [
        "_md5",
        "_sha1",
        "_blake2",
        "_sha3",
        *(["_sha2"] if sys.version_info >= (3, 12) else ["_sha256", "_sha512"]),
    ],
)
def test_without_builtin_hashes_the_worker_keeps_hashlibs_openssl(missing: str) -> None:
    """A Python built without any one of them (FIPS builds leave them out) needs OpenSSL for that hash:
    the worker leaves hashlib's OpenSSL backend in, and hashlib has every hash."""
    mods = modules_without_site(
        f"import sys\nsys.modules[{missing!r}] = None\nimport relaywatch.run.worker\n{_HASHES_WORK}"
    )
    assert "_hashlib" in mods and "bcrypt" not in mods
