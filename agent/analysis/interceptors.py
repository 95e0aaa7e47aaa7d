"""Naming the product behind an interception, from the data file agent/data/interceptors.yml."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from relaywatch.analysis.certs import common_name, rfc4514, spki_sha256
from relaywatch.analysis.membership import issuer_of
from relaywatch.datadir import DATA


def _none(_cert: x509.Certificate) -> bool:
    return False


# The name attributes a rule may name, by the key interceptors.yml uses for them.
ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
}


@dataclass(frozen=True, slots=True)
class NameRule:
    """Every part must hold: some value of that attribute (read by OID from the parsed name, never from its
    RFC 4514 text, which a CN containing ",O=..." could fake) contains the pattern, case-insensitively."""

    parts: tuple[tuple[str, re.Pattern[str]], ...]

    def matches(self, name: x509.Name) -> bool:
        return all(
            any(pattern.search(_text(a.value)) for a in name.get_attributes_for_oid(ATTRIBUTES[key]))
            for key, pattern in self.parts
        )

    def __str__(self) -> str:
        return " and ".join(f"{key} ~ {pattern.pattern!r}" for key, pattern in self.parts)


@dataclass(frozen=True, slots=True)
class Product:
    product: str
    vendor: str
    kind: str
    names: tuple[NameRule, ...]  # any one names the product
    spki_sha256: frozenset[str]  # keys of CAs that are the same everywhere (public vendor roots)
    strip_patterns: tuple[re.Pattern[str], ...]
    processes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    product: Product | None  # None: unknown product
    ca: x509.Certificate | None  # the certificate that names it (None if the CA was not presented)
    ca_subject: str
    matched: str
    ca_cn: str = ""


class CatalogueError(ValueError):
    """interceptors.yml is malformed: a packaging error, found when it is loaded."""


@dataclass(frozen=True, slots=True, eq=False)
class Catalogue:
    """The one matcher for product names: CA names and keys in a presented chain, CAs in the host's trust
    stores, process names. Order is the data file's: the first product that matches wins."""

    products: tuple[Product, ...]

    def by_name(self, name: x509.Name) -> tuple[Product, NameRule] | None:
        for product in self.products:
            for rule in product.names:
                if rule.matches(name):
                    return product, rule
        return None

    def by_key(self, cert: x509.Certificate) -> Product | None:
        spki = spki_sha256(cert)
        return next((p for p in self.products if spki in p.spki_sha256), None)

    def ca(self, name: x509.Name, cert: x509.Certificate | None) -> tuple[Product, str] | None:
        """A CA by its key when it was presented (names can be chosen, a key cannot), else by its name."""
        if cert is not None:
            product = self.by_key(cert)
            if product is not None:
                return product, f"CA key (SPKI SHA-256 {spki_sha256(cert)})"
        named = self.by_name(name)
        return (named[0], str(named[1])) if named else None

    def certificate(self, cert: x509.Certificate) -> Product | None:
        """A CA certificate in a trust store: by key, by subject, or by the CA that issued it."""
        found = self.ca(cert.subject, cert) or self.ca(cert.issuer, None)
        return found[0] if found else None

    def process(self, *names: str) -> Product | None:
        """A process by its name or executable, with or without its directory and extension."""
        candidates = set()
        for n in names:
            if n:
                base = os.path.basename(n.replace("\\", "/"))
                candidates |= {n.lower(), base.lower(), os.path.splitext(base)[0].lower()}
        for product in self.products:
            if any(proc.lower() in candidates for proc in product.processes):
                return product
        return None


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def parse_catalogue(text: str) -> Catalogue:
    """interceptors.yml -> Catalogue; a malformed entry fails here, at load, not at the first interception."""
    doc = yaml.safe_load(text)
    out = []
    for entry in doc["products"]:
        where = f"product {entry.get('product')!r}"
        rules = []
        for rule in entry.get("names") or ():
            if not isinstance(rule, dict) or not rule or not set(rule) <= set(ATTRIBUTES):
                raise CatalogueError(
                    f"{where}: a name rule maps {', '.join(ATTRIBUTES)} to patterns: {rule!r}"
                )
            rules.append(NameRule(tuple((k, re.compile(str(v), re.IGNORECASE)) for k, v in rule.items())))
        spki = [str(h).lower() for h in entry.get("spki_sha256") or ()]
        if not all(re.fullmatch(r"[0-9a-f]{64}", h) for h in spki):
            raise CatalogueError(f"{where}: spki_sha256 entries are SHA-256 hex digests")
        out.append(
            Product(
                product=entry["product"],
                vendor=entry["vendor"],
                kind=entry["kind"],
                names=tuple(rules),
                spki_sha256=frozenset(spki),
                strip_patterns=tuple(re.compile(p) for p in entry.get("strip_patterns") or ()),
                processes=tuple(entry.get("processes") or ()),
            )
        )
    return Catalogue(tuple(out))


@functools.cache
def catalogue() -> Catalogue:
    text = (DATA / "interceptors.yml").read_text(encoding="utf-8")
    return parse_catalogue(text)


def products() -> tuple[Product, ...]:
    return catalogue().products


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
    candidates: list[tuple[x509.Name, x509.Certificate | None]] = [(leaf.issuer, issuer_of(leaf, upper))]
    for cert in upper:
        candidates += [(cert.subject, cert), (cert.issuer, issuer_of(cert, upper))]
    for name, named in candidates:
        found = catalogue().ca(name, named)
        if found is not None:
            return Match(found[0], named, rfc4514(name), found[1], common_name(name))
    ca = issuer_of(leaf, upper) or (leaf if leaf.issuer == leaf.subject else None)
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
