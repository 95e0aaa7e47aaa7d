"""The command line a person meets: reports, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from relaywatch.lab.servers import LabServer

from tests.support import LEAF_2021, cli_json, run_cli

JSON_KEYS = {
    "target",
    "host",
    "port",
    "protocol",
    "address",
    "verdict",
    "findings",
    "starttls",
    "tls",
    "chain",
    "interceptor",
    "transcript",
    "timings",
}


@pytest.mark.peers
def test_check_json_contract(relay: LabServer, lab_dir: Path) -> None:
    rc, [r] = cli_json(
        "check", "--profile", str(lab_dir / "lab-profile.yml"), f"smtp://127.0.0.1:{relay.port}"
    )
    assert rc == 0 and set(r) >= JSON_KEYS
    assert (r["protocol"], r["verdict"], r["starttls"]["state"]) == ("smtp", "ok", "offered")
    assert (r["host"], r["port"], r["address"]) == ("127.0.0.1", relay.port, "127.0.0.1")
    assert r["tls"]["version"] and r["tls"]["cipher"]
    assert {"subject", "issuer", "sha256", "spki_sha256", "not_before", "not_after", "expected"} <= set(
        r["chain"][0]
    )
    assert all({"code", "severity", "message", "verdict"} == set(f) for f in r["findings"])


@pytest.mark.peers
def test_check_human_report(relay: LabServer, lab_dir: Path) -> None:
    proc = run_cli(
        "check",
        "--transcript",
        "--profile",
        str(lab_dir / "lab-profile.yml"),
        f"smtp://127.0.0.1:{relay.port}",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Verdict:   OK" in out and "STARTTLS:  offered" in out and "TLSv1.3" in out
    assert "Chain presented" in out and "relaywatch Lab TLS CA OCSP 04" in out
    assert "C STARTTLS" in out and "Timings:" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["check", "ftp://x"], "unknown scheme"),
        (["check", "host:99999"], "out of range"),
        (["check", "--profile", "nope", "h"], "no such file or built-in profile"),
        (["check", "--timeout", "-1", "h"], "--timeout"),
        (["analyze", "/nonexistent.pem"], "No such file"),
        (["analyze", "pyproject.toml"], "not a PEM bundle or DER"),
        (
            ["analyze", "--at", "yesterday", str(LEAF_2021)],
            "ISO 8601",
        ),
        (["check", "[x"], "brackets"),
        (["check", "[]"], "brackets"),
        (["check", "["], "brackets"),
        (["check", "h:²5"], "not a number"),
        (["check", "smtp://[::1].mail.protection.outlook.com:25"], "expected [IPv6 address]:port"),
        (["check", "--profile", "p" * 300, "h"], "profile"),
        (["analyze", "--host", "a b", str(LEAF_2021)], "--host"),
        (["check", "--dnssec", "maybe", "mx:example.test"], "--dnssec 'maybe': one of auto, require, off"),
        (["check", "--dns.resolver", "resolver.example", "mx:example.test"], "--dns.resolver"),
        (["run", "--dnssec", "ON"], "--dnssec 'ON': one of auto, require, off"),
        (["run", "--dns.resolver", "127.0.0.1:70000"], "out of range"),
        (["run", "--dns.resolver", "dns.example"], "the resolver is an IP address"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("relaywatch: error:") and needle in lines[0], proc.stderr


def test_broken_profile_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nanchors: [a.pem\n")
    proc = run_cli("analyze", "--profile", str(bad), str(LEAF_2021))
    assert proc.returncode == 2 and f"{bad}:3: invalid YAML" in proc.stderr
    missing = tmp_path / "missing.yml"
    missing.write_text("name: x\nanchors: [nowhere.pem]\n")
    proc = run_cli("analyze", "--profile", str(missing), str(LEAF_2021))
    assert proc.returncode == 2 and "nowhere.pem" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.peers
def test_exit_1_when_any_target_is_not_ok(relay: LabServer, lab_dir: Path) -> None:
    rc, results = cli_json(
        "check",
        "--profile",
        str(lab_dir / "lab-profile.yml"),
        "--timeout",
        "2",
        f"smtp://127.0.0.1:{relay.port}",
        "smtp://no-such-host.invalid",
    )
    assert rc == 1 and [r["verdict"] for r in results] == ["ok", "unreachable"]


@pytest.mark.peers
def test_demo_runs_the_whole_lab() -> None:
    proc = run_cli("demo", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    verdicts = {r["scenario"]: r["verdict"] for r in json.loads(proc.stdout)}
    assert verdicts == {
        "relay": "ok",
        "imaps": "ok",
        "mail-shield": "intercepted",
        "corporate-proxy": "intercepted",
        "cisco-asa": "starttls_stripped",
        "tls10-only": "tls_downgraded",
        "ca-changed": "unexpected_issuer",
        "expired": "certificate_invalid",
    }


def test_analyze_takes_an_ipv6_host(tmp_path: Path) -> None:
    proc = run_cli("analyze", "--host", "::1", "--json", str(LEAF_2021))
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["host"] == "::1", proc.stderr
    proc = run_cli("analyze", "--host", "[::1]", "--json", str(LEAF_2021))
    assert proc.returncode == 1 and json.loads(proc.stdout)[0]["host"] == "::1", proc.stderr


def test_analyze_of_a_certificate_with_a_duplicate_extension_is_a_verdict(tmp_path: Path) -> None:
    cnf = tmp_path / "dup.cnf"
    cnf.write_text(
        "[req]\ndistinguished_name=dn\nprompt=no\nx509_extensions=ext\n[dn]\nCN=dup.example\n"
        "[ext]\nsubjectAltName=DNS:a.example\n1.2.3.4=ASN1:UTF8String:x\n1.2.3.4=ASN1:UTF8String:y\n"
    )
    pem = tmp_path / "dup.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "k"),
            "-out",
            str(pem),
            "-config",
            str(cnf),
            "-days",
            "30",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    proc = run_cli("analyze", "--json", str(pem))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)[0]["verdict"] == "intercepted"
