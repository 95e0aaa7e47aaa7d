"""Writes agent/data/profiles/certs/index.txt: subject, issuer, expiry and SPKI SHA-256 of each PEM there.

tests/test_profiles_data.py checks that index.txt is current."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = Path(__file__).resolve().parent.parent / "agent" / "data" / "profiles" / "certs"


def index() -> str:
    out = []
    for pem in sorted(HERE.glob("*.pem")):
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        out += [
            f"### {pem.name}",
            f"subject={cert.subject.rfc4514_string()}",
            f"issuer={cert.issuer.rfc4514_string()}",
            f"notAfter={cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
            f"spki_sha256={hashlib.sha256(spki).hexdigest()}",
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    (HERE / "index.txt").write_text(index())
