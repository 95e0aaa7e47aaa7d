"""Findings about the session itself rather than its certificates: TLS version and cipher, and where
authentication is offered. A relay exists to take authenticated submissions; credentials sent before TLS,
or over a suite an eavesdropper can break, are readable whatever the certificate says.
"""

from __future__ import annotations

from collections.abc import Iterable

from relaywatch.analysis.profile import TrustProfile
from relaywatch.model import Finding, ProbeRecord, Severity, StartTLSState, Verdict

CRIT, WARN = Severity.CRITICAL, Severity.WARNING

# weaknesses that break confidentiality outright: below `compatible`
_BROKEN = (
    ("anonymous key exchange", ("ADH", "AECDH", "ANON")),
    ("no encryption", ("NULL",)),
    ("export grade", ("EXP",)),
    ("RC4", ("RC4",)),
    ("3DES", ("DES-CBC3", "3DES")),
    ("single DES", ("DES-CBC-",)),
)


def cipher_weaknesses(cipher: str) -> tuple[list[str], list[str]]:
    """(broken, dated) for an OpenSSL cipher name. Dated: not AEAD, or no forward secrecy."""
    name = cipher.upper()
    if not name:
        return [], []
    broken = [what for what, marks in _BROKEN if any(m in name for m in marks)]
    dated: list[str] = []
    if name.startswith("TLS_"):  # TLS 1.3 suites: AEAD with (EC)DHE always
        return broken, dated
    if not any(m in name for m in ("GCM", "CHACHA20", "CCM")):
        dated.append("not AEAD (CBC with a MAC)")
    if not name.startswith(("ECDHE", "DHE", "EDH")):
        dated.append("no forward secrecy")
    return broken, dated


def tls_parameters(record: ProbeRecord, profile: TrustProfile) -> list[Finding]:
    tls = record.tls
    if tls is None or not tls.version:
        return []
    out: list[Finding] = []
    if not profile.tls_version_ok(tls.version):
        out.append(
            Finding(
                "tls_version_below_minimum",
                CRIT,
                f"negotiated {tls.version}, below the profile's minimum TLS {profile.min_tls_version}: "
                "something on the path forces an old protocol, or the server is not the real relay",
                Verdict.TLS_DOWNGRADED,
            )
        )
    broken, dated = cipher_weaknesses(tls.cipher)
    if broken or dated:
        below = bool(broken) or (profile.min_cipher == "modern" and bool(dated))
        out.append(
            Finding(
                "cipher_weak",
                CRIT if below else WARN,
                f"negotiated {tls.cipher}: {', '.join(broken + dated)}"
                + (
                    f"; below the profile's min_cipher {profile.min_cipher}: a middlebox or a "
                    "misconfigured server forces a weak suite"
                    if below
                    else ""
                ),
                Verdict.TLS_DOWNGRADED if below else None,
            )
        )
    return out


def mechanisms(capabilities: Iterable[str]) -> frozenset[str]:
    """SASL mechanisms in SMTP (`AUTH LOGIN PLAIN`, old `AUTH=LOGIN`), IMAP (`AUTH=PLAIN`) and POP3 (`SASL
    PLAIN`) capability lists."""
    found: set[str] = set()
    for cap in capabilities:
        words = cap.split()
        if not words:
            continue
        head = words[0].upper()
        if head in ("AUTH", "SASL"):
            found.update(w.upper() for w in words[1:])
        elif head.startswith("AUTH="):
            found.update(w.upper() for w in [head[5:], *words[1:]] if w)
    return frozenset(found)


def auth_exposure(record: ProbeRecord, profile: TrustProfile) -> list[Finding]:
    s = record.starttls
    out: list[Finding] = []
    if s.state is not StartTLSState.NOT_APPLICABLE:
        before = mechanisms(s.capabilities)
        if before:
            out.append(
                Finding(
                    "auth_offered_before_tls",
                    CRIT,
                    f"authentication ({', '.join(sorted(before))}) is offered before TLS: a client may "
                    "send credentials in clear text; typical of a middlebox that strips STARTTLS",
                )
            )
    after_caps = s.capabilities if s.state is StartTLSState.NOT_APPLICABLE else s.capabilities_after_tls
    expected = profile.auth_after_tls.get(record.target.port)
    if expected is not None and after_caps and record.tls is not None:
        offered = mechanisms(after_caps)
        if offered != expected:
            missing, extra = sorted(expected - offered), sorted(offered - expected)
            out.append(
                Finding(
                    "auth_mechanisms_unexpected",
                    WARN,
                    f"after TLS the server offers {', '.join(sorted(offered)) or 'no authentication'}; the "
                    f"profile expects {', '.join(sorted(expected))}"
                    + (f" (missing {', '.join(missing)})" if missing else "")
                    + (f" (extra {', '.join(extra)})" if extra else "")
                    + ": the server is not the relay the profile describes, or a proxy rewrites its offer",
                )
            )
    return out
