"""`--web.config.file` in the Prometheus exporter-toolkit format: TLS (with client certificates) and
basic auth with bcrypt hashes."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from relaywatch.run.config import ConfigError

# exporter-toolkit's client_auth_type values -> what Python's ssl module can enforce
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    _ok: set[bytes] = field(default_factory=set)  # digests of credentials already checked (bcrypt is slow)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        import bcrypt  # only when basic auth is configured

        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(b"timing", _dummy())  # same cost for unknown users
            return False
        digest = hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + hashed).digest()
        with self._lock:
            if any(hmac.compare_digest(digest, d) for d in self._ok):
                return True
        try:
            matched = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:  # bcrypt refuses passwords over 72 bytes: simply not these credentials
            return False
        if matched:
            with self._lock:
                if len(self._ok) > 1000:
                    self._ok.clear()
                self._ok.add(digest)
            return True
        return False


@functools.cache
def _dummy() -> bytes:
    import bcrypt

    return bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=10))


def load_web_config(path: str | None) -> WebConfig:
    if path is None:
        return WebConfig()
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping")
    unknown = set(doc) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise ConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    base = Path(path).resolve().parent
    config = WebConfig()
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise ConfigError(f"{path}: basic_auth_users must map user names to bcrypt hashes")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"{path}: basic_auth_users.{user}: not a bcrypt hash")
        config.users[str(user)] = hashed.replace("$2y$", "$2b$", 1).encode()
    tls = doc.get("tls_server_config")
    if tls:
        config.tls = _tls_context(tls, base, path)
    return config


def _tls_context(tls: dict, base: Path, path: str) -> ssl.SSLContext:  # type: ignore[type-arg]
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not cert or not key:
        raise ConfigError(f"{path}: tls_server_config needs cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(base / cert, base / key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{path}: tls_server_config: cannot load {cert} / {key}: {exc}") from exc
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"{path}: client_auth_type {auth!r} is not supported (one of {', '.join(_CLIENT_AUTH)})"
        )
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if ctx.verify_mode != ssl.CERT_NONE:
        ca = tls.get("client_ca_file")
        if not ca:
            raise ConfigError(f"{path}: client_auth_type {auth} needs client_ca_file")
        try:
            ctx.load_verify_locations(base / ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{path}: client_ca_file {ca}: {exc}") from exc
    return ctx
