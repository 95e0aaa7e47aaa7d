"""The resolver and its lab seam, RELAYWATCH_HOSTS_FILE: the names it lists resolve to its addresses only,
so tests give a name several loopback addresses without touching /etc/hosts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from relaywatch.addresses import AddressFamily
from relaywatch.probe.limits import Limits, ProbeError
from relaywatch.probe.options import ProbeOptions
from relaywatch.probe.resolve import HOSTS_FILE_ENV, parse_hosts, resolve
from relaywatch.probe.session import probe_target
from relaywatch.target import parse_target

from tests.support import StaticHosts

MAX_ADDRESSES = Limits().max_addresses
V4, V6 = AddressFamily.V4, AddressFamily.V6


def test_listed_names_resolve_to_their_addresses_in_order(static_hosts: StaticHosts) -> None:
    static_hosts({"dual.relaywatch.test": ["127.0.0.2", "::1", "127.0.0.2", "127.0.0.3"]})
    assert resolve("dual.relaywatch.test", 25) == ["127.0.0.2", "::1", "127.0.0.3"]
    assert resolve("DUAL.relaywatch.test.", 25) == ["127.0.0.2", "::1", "127.0.0.3"]  # as DNS compares
    assert resolve("dual.relaywatch.test", 25, V4) == ["127.0.0.2", "127.0.0.3"]
    assert resolve("dual.relaywatch.test", 25, V6) == ["::1"]


def test_a_family_the_name_lacks_is_unreachable(static_hosts: StaticHosts) -> None:
    static_hosts({"v4.relaywatch.test": ["127.0.0.1"]})
    with pytest.raises(ProbeError) as err:
        resolve("v4.relaywatch.test", 25, V6)
    assert (err.value.phase, err.value.kind) == ("resolve", "unreachable") and "no IPv6" in err.value.message


def test_the_cap_on_addresses_holds_for_the_seam_too(static_hosts: StaticHosts) -> None:
    static_hosts({"many.relaywatch.test": [f"127.0.1.{i}" for i in range(1, 40)]})
    assert len(resolve("many.relaywatch.test", 25)) == MAX_ADDRESSES


def test_the_file_is_consulted_only_while_set(
    static_hosts: StaticHosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`localhost` is in every /etc/hosts: the seam overrides it, and unset, the system answers again."""
    static_hosts({"localhost": ["127.0.0.9"]})
    assert resolve("localhost", 25, V4) == ["127.0.0.9"]
    monkeypatch.delenv(HOSTS_FILE_ENV)
    assert "127.0.0.9" not in resolve("localhost", 25, V4)


def test_names_not_listed_go_to_the_system_resolver(static_hosts: StaticHosts) -> None:
    static_hosts({"other.relaywatch.test": ["127.0.0.5"]})
    assert set(resolve("localhost", 25, V4)) <= {"127.0.0.1", "127.0.1.1"}


def test_a_rewritten_file_is_read_again(static_hosts: StaticHosts) -> None:
    path = static_hosts({"moving.relaywatch.test": ["127.0.0.2"]})
    assert resolve("moving.relaywatch.test", 25) == ["127.0.0.2"]
    path.write_text("127.0.0.3 moving.relaywatch.test\n")
    stamp = path.stat().st_mtime_ns + 1_000_000
    os.utime(path, ns=(stamp, stamp))
    assert resolve("moving.relaywatch.test", 25) == ["127.0.0.3"]


def test_ip_literals_never_consult_the_file(static_hosts: StaticHosts) -> None:
    static_hosts({"127.0.0.1": ["127.0.0.7"]})
    assert resolve("127.0.0.1", 25) == ["127.0.0.1"]
    with pytest.raises(ProbeError, match="not an IPv6 address"):
        resolve("127.0.0.1", 25, V6)


def test_hosts_syntax() -> None:
    text = "# lab\n127.0.0.2  a.test  alias.test # trailing\n\n::1 a.test\n   \n"
    assert parse_hosts(text) == {"a.test": ("127.0.0.2", "::1"), "alias.test": ("127.0.0.2",)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.2 ok.test\nlocalhost 127.0.0.1\n", "lab.hosts:2: 'localhost' is not an IP address"),
        ("127.0.0.2\n", "lab.hosts:1: no name for 127.0.0.2"),
    ],
)
def test_a_mistyped_file_fails_loudly_naming_the_line(text: str, message: str) -> None:
    """Falling through to real DNS instead would send a lab's probe off the loopback."""
    with pytest.raises(ProbeError) as err:
        parse_hosts(text, "lab.hosts")
    assert err.value.message == message


def test_an_unreadable_file_is_a_resolve_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOSTS_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(ProbeError) as err:
        resolve("a.relaywatch.test", 25)
    assert err.value.phase == "resolve" and HOSTS_FILE_ENV in err.value.message


def test_a_probe_reports_every_address_of_the_name(static_hosts: StaticHosts) -> None:
    """Through the probe session: one record per address, each apart (here both refuse on port 1)."""
    static_hosts({"dual.relaywatch.test": ["127.0.0.1", "127.0.0.2"]})
    opts = ProbeOptions(limits=Limits(timeout=2.0, phase_timeout=2.0))
    records = probe_target(parse_target("smtp://dual.relaywatch.test:1"), opts)
    assert [r.address for r in records] == ["127.0.0.1", "127.0.0.2"]
    assert all(r.failure is not None and r.failure.phase == "connect" for r in records)
    first = probe_target(parse_target("smtp://dual.relaywatch.test:1"), ProbeOptions(first_address=True))
    assert [r.address for r in first] == ["127.0.0.1"]
