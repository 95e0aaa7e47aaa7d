"""Naming the product behind an interception, from the data file agent/data/interceptors.yml."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import yaml
from cryptography import x509
from relaywatch.analysis.certs import common_name, rfc4514, spki_sha256
from relaywatch.analysis.membership import signed_by


def _none(_cert: x509.Certificate) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Product:
    product: str
    vendor: str
    kind: str
    patterns: tuple[re.Pattern[str], ...]
    strip_patterns: tuple[re.Pattern[str], ...]
    processes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    product: Product | None  # None: unknown product
    ca: x509.Certificate | None  # the certificate that names it (None if the CA was not presented)
    ca_subject: str
    matched: str
    ca_cn: str = ""


@functools.cache
def products() -> tuple[Product, ...]:
    text = (resources.files("relaywatch") / "data" / "interceptors.yml").read_text(encoding="utf-8")
    out = []
    for entry in yaml.safe_load(text)["products"]:
        out.append(
            Product(
                product=entry["product"],
                vendor=entry["vendor"],
                kind=entry["kind"],
                patterns=tuple(re.compile(p, re.IGNORECASE) for p in entry.get("patterns") or ()),
                strip_patterns=tuple(re.compile(p) for p in entry.get("strip_patterns") or ()),
                processes=tuple(entry.get("processes") or ()),
            )
        )
    return tuple(out)


def identify(
    chain: Sequence[x509.Certificate], profile_cert: Callable[[x509.Certificate], bool] = _none
) -> Match:
    """Memoized: an intercepted target shows the same forged chain on every round."""
    return _identify(tuple(chain), profile_cert)


@functools.lru_cache(maxsize=256)
def _identify(
    chain: Sequence[x509.Certificate], profile_cert: Callable[[x509.Certificate], bool] = _none
) -> Match:
    """Match the issuing side of a chain that did not validate; fall back to the CA that signed the leaf.

    Certificates for which `profile_cert` is true (the operator's own CAs, presented alongside a forged
    leaf or spoofed by name) are never the interceptor: the CA named is one whose key signed."""
    if not chain:
        return Match(None, None, "", "no certificate")
    leaf, upper = chain[0], [c for c in chain[1:] if not profile_cert(c)]
    # (a CA's name, its certificate if presented)
    candidates: list[tuple[x509.Name, x509.Certificate | None]] = [(leaf.issuer, _issuer_cert(leaf, upper))]
    for cert in upper:
        candidates += [(cert.subject, cert), (cert.issuer, _issuer_cert(cert, upper))]
    for product in products():
        for name, named in candidates:
            for pattern in product.patterns:
                if pattern.search(rfc4514(name)):
                    return Match(product, named, rfc4514(name), pattern.pattern, common_name(name))
    ca = _issuer_cert(leaf, upper) or (leaf if leaf.issuer == leaf.subject else None)
    name = ca.subject if ca is not None else leaf.issuer
    return Match(
        None, ca, rfc4514(name), "issuer of the leaf (no product pattern matched)", common_name(name)
    )


def identify_stripper(capabilities: Sequence[str], reply: str | None) -> Product | None:
    texts = [c.split()[0] for c in capabilities if c.split()] + ([reply] if reply else [])
    for product in products():
        if product.strip_patterns and all(any(p.search(t) for t in texts) for p in product.strip_patterns):
            return product
    return None


def ca_spki(match: Match) -> str:
    return spki_sha256(match.ca) if match.ca is not None else ""


def _issuer_cert(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The presented certificate whose key signed `cert` (a name match alone can be a spoof)."""
    for candidate in pool:
        if candidate is not cert and signed_by(cert, candidate):
            return candidate
    return None
