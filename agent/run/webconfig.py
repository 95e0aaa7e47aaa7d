"""`--web.config.file` in the Prometheus exporter-toolkit format: TLS (with client certificates) and
basic auth with bcrypt hashes.

Basic auth costs the main process a bcrypt check per new credential, so: an unknown user is checked
against a dummy hash of the same cost as the configured ones (no timing tells users apart, as long as they
share one cost), verified credentials are remembered by digest, and each client has a failure budget
(a token bucket) beyond which it is answered 429 without any bcrypt at all."""

from __future__ import annotations

import base64
import enum
import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from relaywatch.run.config import ConfigError
from relaywatch.yamlsafe import problem, safe_load

if TYPE_CHECKING:  # ssl, hashlib and OpenSSL load only with TLS or basic auth configured (about 1 MB)
    import ssl

# exporter-toolkit's client_auth_type values -> the name of what Python's ssl module can enforce
_CLIENT_AUTH = {
    "NoClientCert": "CERT_NONE",
    "VerifyClientCertIfGiven": "CERT_OPTIONAL",
    "RequireAndVerifyClientCert": "CERT_REQUIRED",
}
FAILURES_BURST = 10  # failed logins a client may make at once
FAILURES_PER_SECOND = 1 / 6  # then one every 6 s (10 a minute)
MAX_CLIENTS = 4096  # clients with a failure budget in use, bounded


class Auth(enum.Enum):
    OK = "ok"
    DENIED = "denied"  # 401
    LIMITED = "limited"  # 429: this client has used its failure budget


class FailureBudget:
    """Failed logins per client address: a token bucket each, in a bounded table."""

    def __init__(self, burst: float = FAILURES_BURST, rate: float = FAILURES_PER_SECOND) -> None:
        self.burst, self.rate = burst, rate
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._lock = threading.Lock()

    def _tokens(self, client: str, now: float) -> float:
        tokens, when = self._buckets.get(client, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)

    def exhausted(self, client: str) -> bool:
        with self._lock:
            return self._tokens(client, time.monotonic()) < 1

    def fail(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(client, now) - 1
            if client not in self._buckets and len(self._buckets) >= MAX_CLIENTS:
                full = [c for c in self._buckets if self._tokens(c, now) >= self.burst]
                for c in full or list(self._buckets)[: MAX_CLIENTS // 4]:
                    del self._buckets[c]
            self._buckets[client] = (tokens, now)


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    _ok: set[bytes] = field(default_factory=set)  # digests of credentials already checked (bcrypt is slow)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    budget: FailureBudget = field(default_factory=FailureBudget)

    def authorized(self, header: str | None, client: str = "") -> bool:
        return self.check(header, client) is Auth.OK

    def known(self, header: str | None) -> bool:
        """No auth configured, or these credentials were verified before: cheap to answer."""
        if not self.users:
            return True
        parsed = _credentials(header)
        return parsed is not None and parsed[0] in self.users and self._cached(self._digest(*parsed))

    def check(self, header: str | None, client: str) -> Auth:
        if not self.users:
            return Auth.OK
        parsed = _credentials(header)
        if parsed is not None:
            digest = self._digest(*parsed)
            if self._cached(digest):
                return Auth.OK
        if self.budget.exhausted(client):
            return Auth.LIMITED
        if parsed is not None and self._verify(*parsed):
            with self._lock:
                if len(self._ok) > 1000:
                    self._ok.clear()
                self._ok.add(self._digest(*parsed))
            return Auth.OK
        self.budget.fail(client)
        return Auth.DENIED

    def _digest(self, user: str, password: str) -> bytes:
        import hashlib  # basic auth is configured

        hashed = self.users.get(user, b"")
        return hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + hashed).digest()

    def _cached(self, digest: bytes) -> bool:
        import hmac

        with self._lock:
            return any(hmac.compare_digest(digest, d) for d in self._ok)

    def _verify(self, user: str, password: str) -> bool:
        import bcrypt  # only when basic auth is configured

        hashed = self.users.get(user)
        if hashed is None:  # the same work as for a configured user
            bcrypt.checkpw(password.encode()[:72], _dummy(self.cost))
            return False
        try:
            return bool(bcrypt.checkpw(password.encode(), hashed))
        except ValueError:  # bcrypt refuses passwords over 72 bytes: simply not these credentials
            return False

    @property
    def cost(self) -> int:
        """The cost of the configured hashes (the highest, if they differ: give them all one cost)."""
        return max((_cost(h) for h in self.users.values()), default=10)


def _credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def _cost(hashed: bytes) -> int:
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return 10


@functools.cache
def _dummy(cost: int) -> bytes:
    import bcrypt

    return bytes(bcrypt.hashpw(b"dummy", bcrypt.gensalt(rounds=cost)))


def load_web_config(path: str | None) -> WebConfig:
    if path is None:
        return WebConfig()
    try:
        doc = safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}:{mark.line + 1 if mark else '?'}: invalid YAML: {problem(exc)}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping")
    unknown = {str(k) for k in doc} - {"tls_server_config", "basic_auth_users", "http_server_config"}
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
    if tls is not None:
        if not isinstance(tls, dict):
            raise ConfigError(f"{path}: tls_server_config must be a mapping (cert_file, key_file, ...)")
        config.tls = _tls_context(tls, base, path)
    return config


def _file(tls: dict[str, Any], key: str, path: str, required: bool = True) -> str | None:
    value = tls.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: tls_server_config.{key} must be a file name")
    return value


def _tls_context(tls: dict[str, Any], base: Path, path: str) -> ssl.SSLContext:
    unknown = {str(k) for k in tls} - {"cert_file", "key_file", "client_auth_type", "client_ca_file"}
    if unknown:
        raise ConfigError(f"{path}: tls_server_config: unknown key {sorted(unknown)[0]!r}")
    cert, key = _file(tls, "cert_file", path), _file(tls, "key_file", path)
    auth = tls.get("client_auth_type", "NoClientCert")
    if not isinstance(auth, str) or auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"{path}: client_auth_type {auth!r} is not supported (one of {', '.join(_CLIENT_AUTH)})"
        )
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(base / str(cert), base / str(key))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{path}: tls_server_config: cannot load {cert} / {key}: {exc}") from None
    ctx.verify_mode = ssl.VerifyMode[_CLIENT_AUTH[auth]]
    if ctx.verify_mode != ssl.CERT_NONE:
        ca = _file(tls, "client_ca_file", path, required=False)
        if not ca:
            raise ConfigError(f"{path}: client_auth_type {auth} needs client_ca_file")
        try:
            ctx.load_verify_locations(base / ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{path}: client_ca_file {ca}: {exc}") from None
    return ctx
