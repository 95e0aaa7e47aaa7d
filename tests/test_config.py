"""The agent's config: the embedded default, overrides, and errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from relaywatch.run.config import ConfigError, load_config, parse_config
from relaywatch.target import parse_target


def test_embedded_default_probes_microsoft_365() -> None:
    c = load_config(None)
    assert [t.name for t in c.targets] == ["smtp.office365.com:587", "outlook.office365.com:993"]
    assert all(t.interval == 60 and t.timeout == 10 and t.profile.name == "microsoft365" for t in c.targets)
    assert c.targets[1].target.scheme == "imaps"


def test_overrides_and_web_settings(tmp_path: Path, lab_dir: Path) -> None:
    text = f"""
interval: 2m
timeout: 5s
concurrency: 4
ehlo_name: probe.contoso.com
probe_allow: ["*.mail.protection.outlook.com:25"]
web: {{listen_address: "127.0.0.1:9999", config_file: web.yml}}
targets:
  - target: smtp.office365.com:587
  - target: contoso-com.mail.protection.outlook.com:25
    profile: {lab_dir}/lab-profile.yml
    interval: 30s
    timeout: 1500ms
    address_family: "6"
    ehlo_name: other.example
    labels: {{site: hq, team: mail}}
"""
    c = parse_config(text, "c.yml", tmp_path)
    a, b = c.targets
    assert (a.interval, a.timeout, a.ehlo_name, a.profile.name) == (
        120,
        5,
        "probe.contoso.com",
        "microsoft365",
    )
    assert (b.interval, b.timeout, b.address_family, b.ehlo_name, b.profile.name) == (
        30,
        1.5,
        "6",
        "other.example",
        "lab",
    )
    assert dict(b.labels) == {"site": "hq", "team": "mail"} and c.label_names == ("site", "team")
    assert c.concurrency == 4 and c.listen_address == "127.0.0.1:9999"
    assert c.web_config_file == str(tmp_path / "web.yml")
    assert c.allowed(parse_target("smtp.office365.com:587"))
    assert c.allowed(parse_target("fabrikam.mail.protection.outlook.com:25"))
    assert not c.allowed(parse_target("evil.example:25"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("targets: [a:25]\nconcurrency: 0\n", "c.yml:2: concurrency"),
        ("targets:\n  - target: a:25\n  - target: a:25\n", "c.yml:3: target 'a:25' is configured twice"),
        ("targets:\n  - target: a:25\n    labels: {instance: x}\n", "c.yml:3: label name 'instance'"),
        ("targets:\n  - target: a:25\n    profile: nope\n", "c.yml:3: profile 'nope'"),
        ("targets:\n  - target: a:25\n    address_family: 5\n", "c.yml:3: address_family"),
        ("timeout: 0s\ntargets: [a:25]\n", "c.yml:1: timeout: must be more than 0"),
        ("intervall: 5s\ntargets: [a:25]\n", "c.yml:1: unknown key 'intervall'"),
        ("targets: a:25\n", "c.yml:1: targets: must be a non-empty list"),
        ("- a\n", "c.yml: expected a mapping"),
    ],
)
def test_errors_name_file_and_line(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yml", tmp_path)
    assert str(err.value).startswith(message), str(err.value)


def test_command_line_dns_overrides_the_dns_section(tmp_path: Path) -> None:
    """`run --dns.resolver/--dnssec` win over the config for configured and ad-hoc targets; unset keeps it."""
    from relaywatch.probe.dnsconfig import DNSConfig, DNSSECMode
    from relaywatch.run.config import with_dns

    text = (
        'dns: {resolver: "127.0.0.1:53", dnssec: require}\ntargets: [mx:contoso.test, smtp.contoso.test:25]\n'
    )
    c = parse_config(text, "c.yml", tmp_path)
    assert c.dns == DNSConfig("127.0.0.1:53", DNSSECMode.REQUIRE)
    assert with_dns(c, None, None) == c
    both = with_dns(c, "[::1]:5353", DNSSECMode.OFF)
    assert both.dns == DNSConfig("[::1]:5353", DNSSECMode.OFF)
    assert {t.dns for t in both.targets} == {both.dns}
    mode_only = with_dns(c, None, DNSSECMode.AUTO)
    assert {t.dns for t in mode_only.targets} == {DNSConfig("127.0.0.1:53", DNSSECMode.AUTO)}
