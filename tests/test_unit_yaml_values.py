"""Values the YAML grammar accepts but PyYAML's constructors reject (a 5,000-digit integer, a date that
does not exist, `!!bool x`) are one-line errors naming file:line, in every file the agent reads, never a
traceback (exit 70)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from relaywatch.yamlsafe import safe_load

from tests.support import run_cli

BIG = "9" * 5000
# (file text, the line of the bad value), one per command below
PROFILES = [
    (f"name: x\nversion: {BIG}\nanchors: []\n", 2),
    ("name: x\nanchors: []\nversion: 2024-99-99\n", 3),
    ("name: !!bool maybe\nanchors: []\n", 1),
]
CONFIGS = [
    (f"targets:\n  - target: tls://127.0.0.1:1\n    interval: {BIG}\n", 3),
    ("targets:\n  - target: tls://127.0.0.1:1\n    interval: 2001-13-45\n", 3),
    ("timeout: !!int ''\ntargets:\n  - target: tls://127.0.0.1:1\n", 1),
    ("targets:\n  - ? [a]\n    : 1\n", 2),  # the config's own mapping constructor: an unhashable key
]
WEB_CONFIGS = [
    (f"basic_auth_users:\n  u: {BIG}\n", 2),
    ("basic_auth_users:\n  u: 2001-02-30\n", 2),
    ("http_server_config:\n  http2: !!timestamp soon\n", 2),
]
LOOPBACK_CONFIG = "targets:\n  - target: tls://127.0.0.1:1\n    interval: 60s\n"


def one_line_naming(proc_stderr: str, path: Path, line: int) -> bool:
    lines = proc_stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f"relaywatch: error: {path}:{line}: invalid YAML: ")


@pytest.mark.parametrize(("text", "line"), PROFILES, ids=["bigint", "timestamp", "bool"])
def test_check_with_a_bad_value_in_the_profile(text: str, line: int, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    proc = run_cli("check", "--profile", str(bad), "h")
    assert proc.returncode == 2 and one_line_naming(proc.stderr, bad, line), proc.stderr


@pytest.mark.parametrize(("text", "line"), CONFIGS, ids=["bigint", "timestamp", "int", "unhashable-key"])
def test_run_with_a_bad_value_in_the_config(text: str, line: int, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    proc = run_cli("run", "--config.file", str(bad), "--web.listen-address", "127.0.0.1:0")
    assert proc.returncode == 2 and one_line_naming(proc.stderr, bad, line), proc.stderr


@pytest.mark.parametrize(("text", "line"), WEB_CONFIGS, ids=["bigint", "timestamp", "tagged"])
def test_run_with_a_bad_value_in_the_web_config(text: str, line: int, tmp_path: Path) -> None:
    bad, config = tmp_path / "bad.yml", tmp_path / "config.yml"
    bad.write_text(text)
    config.write_text(LOOPBACK_CONFIG)
    proc = run_cli(
        "run",
        "--config.file",
        str(config),
        "--web.config.file",
        str(bad),
        "--web.listen-address",
        "127.0.0.1:0",
    )
    assert proc.returncode == 2 and one_line_naming(proc.stderr, bad, line), proc.stderr


# Scalars as the resolver sees them: numbers of any length, date-like triples out of range, and
# explicit tags over text that may not fit them.
_digits = st.one_of(
    st.text("0123456789", min_size=1, max_size=8), st.integers(4290, 4310).map(lambda n: "1" * n)
)
_timestamps = st.builds(
    "{}-{:02d}-{:02d}{}".format,
    st.integers(0, 9999).map("{:04d}".format),
    st.integers(0, 99),
    st.integers(0, 99),
    st.sampled_from(["", " 04:05:06", "T25:61:61", " 01:02:03 +99:00", "t01:02:03.5Z", " 1:2:3 -1"]),
)
_plain = st.one_of(
    _digits,
    _digits.map("-{}".format),
    _digits.map("0x{}".format),
    _digits.map("0o{}".format),
    _digits.map("1:{}".format),
    _timestamps,
    st.sampled_from([".nan", ".inf", "-.inf", "1e400", "1_000", "0b102", "~", "yes", "Off", "", "-", ":"]),
)
_tags = st.sampled_from(
    ["", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!null ", "!!binary ", "!!str "]
)
_scalar = st.builds(
    "{}{}".format, _tags, st.one_of(_plain, _plain.map("'{}'".format), st.text(max_size=12).map(repr))
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_scalar, min_size=1, max_size=4))
def test_scalars_load_or_raise_yaml_errors(values: list[str]) -> None:
    doc = "".join(f"k{i}: {v}\n" for i, v in enumerate(values))
    with contextlib.suppress(yaml.YAMLError):
        safe_load(doc)
