"""Pure tests of the trust engine's parts: the SCT wire format, SCT verification, cipher and SASL parsing."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from relaywatch.analysis import ct
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.analysis.session import cipher_weaknesses, mechanisms
from relaywatch.codec import convert, to_builtins
from relaywatch.lab import ctlog
from relaywatch.lab.pki import LAB_NAMES, Issued, _name, make_ca, make_leaf
from relaywatch.model import CTReport

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ms365-ca"
LEAF_2021 = Path(__file__).parent / "data" / "leaf-mail-protection-outlook-com-2021.pem"
ISSUER_2021 = (
    Path(__file__).resolve().parent.parent / "agent/data/profiles/certs/digicert-cloud-services-ca-1.pem"
)
NAMES = (*LAB_NAMES, "127.0.0.1", "::1")


def codes(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in result.analysis.findings}


@dataclass(frozen=True)
class PublicLab:
    root: Issued
    ca: Issued
    logs: tuple[ctlog.LabLog, ...]
    logged: Issued  # SCTs from two operators, one of them a tiled log (extension bytes signed)
    one_forged_sct: Issued  # the second SCT signed by another key under the real log's id
    directory: Path

    def profile(self, lab_dir: Path, extra: str = "") -> TrustProfile:
        path = self.directory / f"profile-{abs(hash(extra))}.yml"
        path.write_text(
            'name: lab\nversion: "lab"\n'
            f"anchors: [{lab_dir / 'root.pem'}]\nintermediates: [{lab_dir / 'issuing.pem'}]\n"
            f"names: [{', '.join(LAB_NAMES)}]\n"
            f"public_roots: {self.directory / 'public-roots.pem'}\nct_logs: {self.directory / 'logs.json'}\n"
            + extra
        )
        return load_profile(str(path))


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> PublicLab:
    d = tmp_path_factory.mktemp("public")
    root = make_ca(_name("relaywatch Lab Public Root R1", "relaywatch public lab"))
    ca = make_ca(_name("relaywatch Lab Public DV CA", "relaywatch public lab"), root)
    logs = (
        ctlog.LabLog("Lab 'Argon' log", "Lab Operator A"),
        ctlog.LabLog("Lab 'Tuscolo' log", "Lab Operator B", tiled=True, state=None),
    )
    (d / "public-roots.pem").write_bytes(root.cert_pem())
    (d / "logs.json").write_text(json.dumps(ctlog.log_list(logs)))
    rogue = ec.generate_private_key(ec.SECP256R1())
    return PublicLab(
        root,
        ca,
        logs,
        ctlog.issue_with_scts(ca, NAMES, logs),
        ctlog.issue_with_scts(ca, NAMES, logs, signers=[None, rogue]),
        d,
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**63 - 1), st.binary(max_size=300)),
        min_size=1,
        max_size=5,
    ),
    st.binary(min_size=8, max_size=600),
)
def test_sct_list_round_trips_through_cryptography(entries, signature) -> None:  # type: ignore[no-untyped-def]
    issuer = make_ca(_name("rt CA"))
    scts = [ctlog.encode_sct(log_id, ts // 1000 * 1000, ext, signature) for log_id, ts, ext in entries]
    ts_ok = all(ts // 1000 * 1000 < 253402300799000 for _l, ts, _e in entries)  # datetime's year 9999
    if not ts_ok:
        return
    leaf = make_leaf(issuer, ("rt.test",), extra=[(ctlog.sct_extension(scts), False)])
    parsed = list(
        leaf.cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    )
    assert len(parsed) == len(entries)
    for sct, (log_id, ts, ext) in zip(parsed, entries, strict=True):
        assert sct.log_id == log_id and sct.extension_bytes == ext and sct.signature == signature
        ms = (sct.timestamp.replace(tzinfo=None) - dt.datetime(1970, 1, 1)) // dt.timedelta(milliseconds=1)
        assert ms == ts // 1000 * 1000


def test_der_octet_string_lengths() -> None:
    for n in (0, 1, 127, 128, 255, 256, 65535, 65536):
        der = ctlog.der_octet_string(b"x" * n)
        assert (
            der[0] == 4
            and der.endswith(b"x" * n)
            and len(der) - n == (2 if n < 128 else 3 + (n > 255) + (n > 65535))
        )


def test_lab_precert_tbs_is_what_the_logs_signed(public: PublicLab) -> None:
    report = ct.check_leaf(
        public.logged.cert, public.ca.cert, ct.load_log_list(public.directory / "logs.json")
    )
    assert report is not None and [s.valid for s in report.scts] == [True, True]
    assert report.valid_operators == 2
    assert {s.state for s in report.scts} == {"usable", "none"}  # a log without a state is accepted
    tiled = list(
        public.logged.cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    )[1]
    assert tiled.extension_bytes  # the leaf_index extension is part of the signed data


# ---- the real 2021 Microsoft leaf


def test_real_microsoft_leaf_scts_verify_against_the_packaged_list() -> None:
    leaf = x509.load_pem_x509_certificate(LEAF_2021.read_bytes())
    issuer = x509.load_pem_x509_certificate(ISSUER_2021.read_bytes())
    report = ct.check_leaf(leaf, issuer, ct.load_log_list())
    assert report is not None and report.valid_operators == 3
    assert {(s.log, s.operator, s.state, s.valid) for s in report.scts} == {
        ("Google 'Xenon2022' log", "Google", "rejected", True),
        ("Cloudflare 'Nimbus2022' Log", "Cloudflare", "rejected", True),
        ("Let's Encrypt 'Oak2022' log", "Let's Encrypt", "rejected", True),
    }
    assert convert(json.loads(json.dumps(to_builtins(report))), CTReport) == report


def test_cipher_and_mechanism_parsing() -> None:
    assert cipher_weaknesses("TLS_AES_128_GCM_SHA256") == ([], [])
    assert cipher_weaknesses("ECDHE-RSA-AES256-GCM-SHA384") == ([], [])
    assert cipher_weaknesses("AECDH-AES256-SHA")[0] == ["anonymous key exchange"]
    assert cipher_weaknesses("DES-CBC3-SHA")[0] == ["3DES"]
    assert cipher_weaknesses("ECDHE-RSA-AES128-SHA") == ([], ["not AEAD (CBC with a MAC)"])
    assert "no forward secrecy" in cipher_weaknesses("AES128-GCM-SHA256")[1]
    assert mechanisms(["AUTH LOGIN XOAUTH2", "SIZE 1"]) == {"LOGIN", "XOAUTH2"}
    assert mechanisms(["IMAP4rev1", "AUTH=PLAIN", "AUTH=XOAUTH2"]) == {"PLAIN", "XOAUTH2"}
    assert mechanisms(["SASL PLAIN", "USER"]) == {"PLAIN"} and mechanisms(["SASL"]) == frozenset()
