"""The agent's config and web config refuse bad input with one line: reserved label names derived from the
metric families, YAML without aliases or deep nesting, and malformed web configs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from relaywatch.export.metrics import reserved_label_names, series_layout, target_families
from relaywatch.run.config import ConfigError, parse_config
from relaywatch.run.scheduler import failed_result
from relaywatch.run.series import Series
from relaywatch.run.webconfig import load_web_config
from relaywatch.yamlsafe import safe_load


def _target(labels: str) -> str:
    return f"targets:\n  - target: a:25\n    labels: {{{labels}}}\n"


@pytest.mark.parametrize("name", sorted(reserved_label_names()))
def test_every_label_name_a_metric_uses_is_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^c.yml:3: label name '{name}' is reserved"):
        parse_config(_target(f"{name}: y"), "c.yml", tmp_path)


def test_reserved_names_cover_the_labels_the_families_emit(tmp_path: Path) -> None:
    """The bug this replaces: `product: y` was accepted and silently overwritten in interceptor_info."""
    for name in ("product", "cipher", "status", "version", "vendor", "le", "instance"):
        assert name in reserved_label_names()
    config = parse_config(_target("site: hq"), "c.yml", tmp_path)
    tc = config.targets[0]
    s = Series(tc.name, "127.0.0.1", dict(tc.labels), failed_result(tc, "x"))
    s.observe(s.result)
    s.render(None, config.layout)
    from prometheus_client.parser import text_string_to_metric_families

    emitted = {
        k
        for lines in s.rendered.values()
        for f in text_string_to_metric_families(lines.decode())
        for sample in f.samples
        for k in sample.labels
    }
    assert emitted - {"site"} <= reserved_label_names() and "site" in emitted
    declared = {m.name for m in [*series_layout(), *target_families(())]}
    assert "relaywatch_interceptor_info" in declared and "relaywatch_probe_worker_failures" in declared


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: &b [a:25]\ntargets: *b\n", "c.yml:2: invalid YAML: aliases"),
        ("targets: " + "[" * 5000 + "]" * 5000 + "\n", "c.yml:1: invalid YAML: nested more than 64"),
        ("targets:\n  - target: a:25\n    profile: " + "p" * 300 + "\n", "c.yml:3: profile: not a profile"),
    ],
)
def test_yaml_and_profile_names_that_used_to_raise(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yml", tmp_path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_alias_bomb_is_refused_at_once() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    start = time.process_time()
    with pytest.raises(Exception, match="aliases"):
        safe_load("\n".join(levels))
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"basic_auth_users:\n  u: '\xff\xfe'\n", "not UTF-8"),
        (b"tls_server_config: 1\n", "tls_server_config must be a mapping"),
        (b"tls_server_config:\n  cert_file: 1\n  key_file: k.pem\n", "cert_file must be a file name"),
        (b"tls_server_config: {cert_file: c, key_file: k, client_auth_type: [1]}\n", "client_auth_type"),
        (b"a: &x 1\nb: *x\n", "aliases"),
        (b"basic_auth_users: " + b"[" * 3000 + b"\n", "invalid YAML"),
    ],
)
def test_bad_web_configs_are_one_line_errors(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_web_config(str(path))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("name", ["site\n", "site\r\n", "si te", "1site"])
def test_label_names_with_a_trailing_newline_or_other_junk_are_refused(name: str, tmp_path: Path) -> None:
    """`$` in a Python regex also matches before a final newline: validation anchors with \\Z."""
    text = f"targets:\n  - target: relay.example:587\n    labels: {{{name!r}: x}}\n".replace("'", '"')
    with pytest.raises(ConfigError, match="label name"):
        parse_config(text, "c.yml", tmp_path)
