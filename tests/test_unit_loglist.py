"""`relaywatch ct-logs verify FILE SIG [--key PEM]`: a downloaded Google log list against Google's signing
key (agent/data/ct/google_log_list_pubkey.pem), so that operators can refresh the list safely. The signed
original in tests/data/ct is Google's all_logs_list.json v89.25 and its .sig, copied unchanged from
shared/data/ct/sources/google (see agent/data/ct/PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from relaywatch.analysis import ct
from relaywatch.cli import main

DATA = Path(__file__).parent / "data" / "ct"
LIST, SIG = DATA / "all_logs_list-v89.25.json", DATA / "all_logs_list-v89.25.sig"
GOOGLE_KEY_SPKI = "f1d8b68e50210d8e73d9a3e97f571773c52d7f28c0b1a71beee81d8562e6fd85"  # PROVENANCE.md


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[str], list[str]]:
    rc = main(["ct-logs", "verify", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def test_the_signed_original_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, LIST, SIG)
    assert (rc, err, len(out)) == (0, [], 1)
    assert "signature OK" in out[0] and "version 89.25" in out[0] and GOOGLE_KEY_SPKI[:16] in out[0]


def test_the_shipped_key_is_googles() -> None:
    r = ct.verify_list_signature(
        LIST.read_bytes(), SIG.read_bytes(), ct.packaged_list_key_path().read_bytes()
    )
    assert r.valid and r.key_spki_sha256 == GOOGLE_KEY_SPKI


@pytest.mark.parametrize("where", [0, 5000, -2])
def test_one_changed_byte_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path, where: int) -> None:
    body = bytearray(LIST.read_bytes())
    body[where] ^= 0x01
    tampered = tmp_path / "all_logs_list.json"
    tampered.write_bytes(bytes(body))
    rc, out, err = run(capsys, tampered, SIG)
    assert (rc, err, len(out)) == (1, [], 1) and "does NOT verify" in out[0]


def test_a_truncated_signature_or_another_key_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    short = tmp_path / "short.sig"
    short.write_bytes(SIG.read_bytes()[:-1])
    assert run(capsys, LIST, short)[0] == 1
    other = tmp_path / "other.pem"
    other.write_bytes(
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rc, out, _err = run(capsys, LIST, SIG, "--key", other)
    assert rc == 1 and "does NOT verify" in out[0]


def test_unreadable_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    garbage, ec_key = tmp_path / "garbage.pem", tmp_path / "ec.pem"
    garbage.write_text("not a key\n")
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for args in (
        (tmp_path / "missing.json", SIG),
        (LIST, tmp_path),
        (LIST, SIG, "--key", garbage),
        (LIST, SIG, "--key", ec_key),
    ):
        rc, out, err = run(capsys, *args)
        assert (rc, out, len(err)) == (2, [], 1) and err[0].startswith("relaywatch: error: "), args
