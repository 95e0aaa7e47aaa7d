"""A lab PKI shaped like Microsoft's: a root, a bundled issuing CA and an unbundled sibling, a relay leaf,
and an interception CA that forges copies of any leaf. EC P-256 keys: generating them is instant."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LAB_NAMES = ("smtp.relaywatch.test", "localhost")
PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def key_pem(self) -> bytes:
        return self.key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(PEM)

    @staticmethod
    def load(directory: Path, name: str) -> Issued:
        """What LabPKI.write() wrote, for lab processes started in other network namespaces."""
        cert = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Issued(cert, key)


def _name(cn: str, org: str = "relaywatch lab", ou: str | None = None) -> x509.Name:
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
    ]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_ca(
    subject: x509.Name, issuer: Issued | None = None, days: int = 3650, not_before: dt.datetime | None = None
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(days=1000)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
    )
    signer = issuer.key if issuer else key
    signer_pub = issuer.key.public_key() if issuer else key.public_key()
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_pub), critical=False
    )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def make_leaf(
    issuer: Issued,
    names: tuple[str, ...],
    subject: x509.Name | None = None,
    not_before: dt.datetime | None = None,
    days: int = 365,
    key: ec.EllipticCurvePrivateKey | None = None,
    client: bool = False,
    serial: int | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Issued:
    """`extra`: (extension, critical) appended after the usual ones, in order (a precertificate's poison,
    a final certificate's SCT list: the two must differ only there)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(days=10)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or _name(names[0], "relaywatch lab relay"))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical=critical)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def forge(original: x509.Certificate, ca: Issued) -> Issued:
    """What an interceptor does: same subject and names, new key, valid from about a day ago."""
    try:
        sans = original.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in sans)
    except x509.ExtensionNotFound:
        names = ("localhost",)
    return make_leaf(ca, names, subject=original.subject, not_before=_now() - dt.timedelta(days=1), days=30)


@dataclass(frozen=True)
class LabPKI:
    root: Issued  # the lab profile's anchor ("Microsoft TLS RSA Root G2")
    issuing: Issued  # bundled in the lab profile ("OCSP 04")
    sibling: Issued  # NOT bundled: must pass through the root ("OCSP 16")
    relay: Issued  # the relay's leaf, issued by `issuing`
    sibling_relay: Issued  # a leaf issued by the unbundled sibling
    expired_relay: Issued
    wrong_name_relay: Issued
    interception_ca: Issued  # named like a real product, to show identification
    unknown_ca: Issued  # a corporate CA no pattern knows

    def write(self, directory: Path, **keys: str) -> Path:
        """Certificates, keys and a lab trust profile (with any further profile `keys`); returns its path."""
        directory.mkdir(parents=True, exist_ok=True)
        for field in self.__dataclass_fields__:
            issued: Issued = getattr(self, field)
            (directory / f"{field}.pem").write_bytes(issued.cert_pem())
            (directory / f"{field}.key").write_bytes(issued.key_pem())
        profile = directory / "lab-profile.yml"
        profile.write_text(
            'name: lab\nversion: "lab"\nanchors: [root.pem]\nintermediates: [issuing.pem]\n'
            f'names: [{", ".join(LAB_NAMES)}]\nmin_tls_version: "1.2"\nrequire_starttls: true\n'
            + "".join(f"{k}: {v}\n" for k, v in keys.items())
        )
        return profile


def make_lab_pki() -> LabPKI:
    root = make_ca(_name("relaywatch Lab TLS Root G2"))
    issuing = make_ca(_name("relaywatch Lab TLS CA OCSP 04"), root, days=1825)
    sibling = make_ca(_name("relaywatch Lab TLS CA OCSP 16"), root, days=1825)
    past = _now() - dt.timedelta(days=400)
    return LabPKI(
        root=root,
        issuing=issuing,
        sibling=sibling,
        relay=make_leaf(issuing, (*LAB_NAMES, "127.0.0.1", "::1")),
        sibling_relay=make_leaf(sibling, (*LAB_NAMES, "127.0.0.1", "::1")),
        expired_relay=make_leaf(issuing, (*LAB_NAMES, "127.0.0.1", "::1"), not_before=past, days=90),
        wrong_name_relay=make_leaf(issuing, ("mail.other.test",)),
        interception_ca=make_ca(
            _name(
                "Avast Web/Mail Shield Root",
                "relaywatch lab (imitates Avast)",
                "generated by Avast Antivirus for SSL/TLS scanning",
            )
        ),
        unknown_ca=make_ca(_name("Contoso Corporate Inspection CA", "Contoso Ltd")),
    )
