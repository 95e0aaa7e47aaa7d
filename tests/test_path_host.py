"""Where the session is cut, in a routed lab network of namespaces (client -> firewall -> relay), and what
on this host does it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netlab import FW_IN_V4, RELAY_V4, RELAY_V6, Net, topology
from tests.support import value

pytestmark = pytest.mark.peers


@pytest.fixture
def net(lab_dir: Path) -> Iterator[Net]:
    with topology() as n:
        n.python(n.relay, "-m", "relaywatch.lab.serve", "relay", str(lab_dir), "[::]:25", ready=25)
        yield n


def check(
    net: Net,
    lab_dir: Path,
    target: str,
    *flags: str,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    proc = net.run(
        net.client,
        sys.executable,
        "-m",
        "relaywatch",
        "check",
        "--json",
        "--path",
        "--timeout",
        "5",
        "--profile",
        str(lab_dir / "lab-profile.yml"),
        *flags,
        target,
        prefix=prefix,
        env=env,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    [result] = results
    return result


def intercept_in_firewall(net: Net, lab_dir: Path) -> None:
    """Transparent interception: REDIRECT the mail port to sslsplit autossl in the firewall."""
    net.start(
        net.fw,
        "sslsplit",
        "-k",
        str(lab_dir / "unknown_ca.key"),
        "-c",
        str(lab_dir / "unknown_ca.pem"),
        "-u",
        "nobody",
        "-m",
        "nogroup",
        "autossl",
        "0.0.0.0",
        "10025",
        ready=10025,
    )
    net.ns(
        net.fw,
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-i",
        net.fw_in_dev,
        "-p",
        "tcp",
        "--dport",
        "25",
        "-j",
        "REDIRECT",
        "--to-ports",
        "10025",
    )


def test_routing_only_terminates_at_destination(net: Net, lab_dir: Path) -> None:
    for address in (RELAY_V4, RELAY_V6):
        r = check(net, lab_dir, f"smtp://[{address}]:25" if ":" in address else f"smtp://{address}:25")
        assert r["verdict"] == "ok"
        p = r["path"]
        assert p["status"] == "terminated_at_destination", p
        assert (p["terminating_hop"], p["destination_hop"]) == (2, 2)
        assert p["server_distance"] == 2 and not p["packet_modified"]


def test_implicit_tls_distance_comes_from_the_server_hello(net: Net, lab_dir: Path) -> None:
    net.python(
        net.relay,
        "-m",
        "relaywatch.lab.serve",
        "relay",
        str(lab_dir),
        "[::]:465",
        "--implicit-tls",
        ready=465,
    )
    r = check(net, lab_dir, f"smtps://{RELAY_V4}:465")
    assert r["verdict"] == "ok" and r["path"]["status"] == "terminated_at_destination"
    trace = r["path"]["trace"]
    assert trace["greeting_ttl"] == 63 and r["path"]["server_distance"] == 2  # 64 - 1 router


def test_interception_in_firewall_terminates_early(net: Net, lab_dir: Path) -> None:
    intercept_in_firewall(net, lab_dir)
    for attempt in range(2):  # sslsplit 0.5.5 now and then dies on a connection: one retry
        r = check(net, lab_dir, f"smtp://{RELAY_V4}:25")
        if r["verdict"] == "intercepted" or attempt:
            break
    assert r["verdict"] == "intercepted"
    assert "Contoso Corporate Inspection CA" in r["interceptor"]["ca_subject"]
    p = r["path"]
    assert p["status"] == "terminated_early", p
    assert (p["terminating_hop"], p["destination_hop"], p["middlebox"]) == (1, 2, FW_IN_V4)
    assert p["server_distance"] == 1  # the SYN-ACK and greeting come from one hop away


def test_mss_rewrite_is_reported(net: Net, lab_dir: Path) -> None:
    for tool in ("iptables", "ip6tables"):
        net.ns(
            net.fw,
            tool,
            "-t",
            "mangle",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "--tcp-flags",
            "SYN,RST",
            "SYN",
            "-j",
            "TCPMSS",
            "--set-mss",
            "1200",
        )
    for target in (f"smtp://{RELAY_V4}:25", f"smtp://[{RELAY_V6}]:25"):
        p = check(net, lab_dir, target)["path"]
        assert p["status"] == "terminated_at_destination" and p["packet_modified"]
        assert p["modifications"] == ["hop 1: mss_rewritten:1460->1200"]


def test_without_raw_sockets_path_is_unavailable(net: Net, lab_dir: Path) -> None:
    r = check(net, lab_dir, f"smtp://{RELAY_V4}:25", prefix=("setpriv", "--bounding-set", "-net_raw"))
    assert r["verdict"] == "ok"
    assert r["path"]["status"] == "unavailable" and "CAP_NET_RAW" in r["path"]["reason"]


def test_local_process_behind_a_redirect_is_named(net: Net, lab_dir: Path) -> None:
    """A local 'mitmdump' holds the far end of a probe to a remote relay: redirected on this host."""
    net.python(net.relay, "-m", "relaywatch.lab.serve", "relay", str(lab_dir), "[::]:2525", ready=2525)
    net.python(
        net.client,
        "-m",
        "relaywatch.lab.serve",
        "resigner",
        str(lab_dir),
        "127.0.0.1:10026",
        f"{RELAY_V4}:2525",
        "--ca",
        "unknown_ca",
        "--process-name",
        "mitmdump",
        ready=10026,
    )
    net.ns(
        net.client,
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        RELAY_V4,
        "--dport",
        "25",
        "-j",
        "REDIRECT",
        "--to-ports",
        "10026",
    )
    r = check(net, lab_dir, f"smtp://{RELAY_V4}:25")
    assert r["verdict"] == "intercepted"
    assert r["local_peer"]["name"] == "mitmdump" and r["local_peer"]["product"] == "mitmproxy"
    assert r["interceptor"]["product"] == "mitmproxy"  # named by its process, since its CA names nobody
    assert "session_ends_on_this_host" in {f["code"] for f in r["findings"]}
    assert r["host_inspection"]["interceptor_processes"][0]["name"] == "mitmdump"


def test_trust_store_inventory_finds_installed_interceptor_ca(
    net: Net, lab_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store.pem"
    store.write_bytes((lab_dir / "interception_ca.pem").read_bytes() + (lab_dir / "root.pem").read_bytes())
    r = check(net, lab_dir, f"smtp://{RELAY_V4}:25", env={"SSL_CERT_FILE": str(store)})
    cas = r["host_inspection"]["store_interception_cas"]
    assert [(c["product"], c["subject_cn"]) for c in cas] == [("Avast", "Avast Web/Mail Shield Root")]
    assert {c["subject_cn"] for c in r["host_inspection"]["store_foreign_cas"]} == {
        "Avast Web/Mail Shield Root",
        "relaywatch Lab TLS Root G2",
    }
    assert "anchor_not_trusted_locally" not in {f["code"] for f in r["findings"]}  # the lab root is trusted


def agent_metrics(net: Net, lab_dir: Path, tmp_path: Path, prefix: tuple[str, ...] = ()) -> str:
    """Run the agent in the client namespace until it has path metrics; return its /metrics."""
    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        f"interval: 30s\ntimeout: 5s\nprofile: {lab_dir}/lab-profile.yml\npath: {{timeout: 1s}}\n"
        f"metrics: {{detail: true}}\ntargets: [smtp://{RELAY_V4}:25]\n"
    )
    net.start(
        net.client,
        *prefix,
        sys.executable,
        "-m",
        "relaywatch",
        "run",
        "--config.file",
        str(cfg),
        "--web.listen-address",
        "127.0.0.1:10587",
        ready=10587,
    )
    fetch = (
        "import sys, time, urllib.request\n"
        "for _ in range(150):\n"
        "    text = urllib.request.urlopen('http://127.0.0.1:10587/metrics', timeout=5).read().decode()\n"
        "    if 'relaywatch_path_status{' in text: print(text); sys.exit(0)\n"
        "    time.sleep(0.2)\n"
        "sys.exit(1)\n"
    )
    proc = net.run(net.client, sys.executable, "-c", fetch, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_agent_path_metrics_show_the_middlebox(net: Net, lab_dir: Path, tmp_path: Path) -> None:
    intercept_in_firewall(net, lab_dir)
    text = agent_metrics(net, lab_dir, tmp_path)
    assert value(text, "relaywatch_path_status", status="terminated_early") == 1
    assert value(text, "relaywatch_path_middlebox_detected") == 1
    assert (
        value(text, "relaywatch_path_terminating_hop") == 1
        and value(text, "relaywatch_path_destination_hop") == 2
    )
    assert value(text, "relaywatch_path_packet_modified") == 0


def test_agent_without_capability_reports_path_unavailable(net: Net, lab_dir: Path, tmp_path: Path) -> None:
    text = agent_metrics(net, lab_dir, tmp_path, prefix=("setpriv", "--bounding-set", "-net_raw"))
    assert value(text, "relaywatch_path_status", status="unavailable") == 1
    assert value(text, "relaywatch_verdict", verdict="ok") == 1  # probing itself needs no capability
    with pytest.raises(KeyError):
        value(text, "relaywatch_path_terminating_hop")
