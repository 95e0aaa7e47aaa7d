"""The operations kit: dashboard queries against a real Prometheus, alert rules under promtool, the
systemd unit under systemd-analyze, the Debian package."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import marshal
import re
import shutil
import struct
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from relaywatch.lab.demo import running_lab
from relaywatch.lab.servers import LabServer, Mail, server_context

from tests.agent_helpers import prometheus, run_agent
from tests.support import LEAF_2021, ROOT, StaticHosts, get, wait_for

DASHBOARD = ROOT / "grafana" / "relaywatch.json"
RULES = ROOT / "packaging" / "prometheus" / "relaywatch-rules.yml"
RULE_TESTS = ROOT / "packaging" / "prometheus" / "relaywatch-rules.test.yml"
UNIT = ROOT / "packaging" / "systemd" / "relaywatch.service"
GATEWAY, GATEWAY_NAME = "127.0.77.20", "gw.relaywatch.test"


def test_dashboard_is_generated_from_its_source() -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; sys.path.insert(0, 'grafana'); "
            "import build_dashboard as b; print(json.dumps(b.dashboard(), indent=2))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    # byte for byte: regenerating must give the committed file (the SDK's output is deterministic)
    assert built == DASHBOARD.read_text(), "run: python3 grafana/build_dashboard.py"


def test_dashboard_layout_has_unique_ids_and_no_overlap() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    boxes = [(p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"]) for p in panels]
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        assert x1 >= 0 and x1 + w1 <= 24
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1, (
                boxes[i],
                (x2, y2, w2, h2),
            )


@pytest.mark.peers
def test_every_dashboard_query_returns_data(tmp_path: Path, static_hosts: StaticHosts) -> None:
    dash = json.loads(DASHBOARD.read_text())
    # a gateway target (port 25, a name from the hosts file: DANE unavailable) for the DANE panel
    static_hosts({GATEWAY_NAME: [GATEWAY]})
    with (
        running_lab() as lab,
        LabServer(Mail("smtp", server_context(lab.pki.relay, [lab.pki.issuing])), GATEWAY, 25),
    ):
        wanted = {"relay", "mail-shield", "cisco-asa"}
        cfg = tmp_path / "agent.yml"
        cfg.write_text(
            f"interval: 2s\ntimeout: 3s\nprofile: {lab.directory}/lab-profile.yml\npath: {{timeout: 1s}}\n"
            "targets:\n"
            + "".join(f"  - {s.target}\n" for s in lab.scenarios if s.name in wanted)
            + f"  - {GATEWAY_NAME}:25\n"
        )
        with run_agent(cfg) as agent, prometheus(tmp_path, agent) as api:

            def query(expr: str) -> list[Any]:
                body = json.loads(get(f"{api}/query?query={urllib.parse.quote(expr)}")[1])
                assert body["status"] == "success", (expr, body)
                result: list[Any] = body["data"]["result"]
                return result

            wait_for(
                lambda: (
                    query("relaywatch_path_middlebox_detected")
                    and len(query("relaywatch_verdict == 1")) == 4
                    and query("relaywatch:hosts_intercepted:count_by_product")  # the rules ran since
                ),
                90,
            )
            for var in dash["templating"]["list"]:
                if var["type"] != "query":
                    continue
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
                assert m, var
                match = m.group(1).replace("$instance", ".*")
                values = json.loads(
                    get(f"{api}/label/{m.group(2)}/values?match[]={urllib.parse.quote(match)}")[1]
                )
                assert values["data"], var["name"]
            exprs = [
                (p["title"], t["expr"].replace("$instance", ".*").replace("$target", ".*"))
                for p in dash["panels"]
                for t in p["targets"]
            ]
            with contextlib.suppress(TimeoutError):  # rates need two scrapes: give them time, then say which
                wait_for(lambda: all(query(e) for _, e in exprs), 60)
            for title, expr in exprs:
                assert query(expr), (title, expr)


@pytest.mark.peers  # promtool, Prometheus's own rule checker: ~15 s
def test_alert_rules_check_and_unit_tests() -> None:
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert test.returncode == 0, test.stdout + test.stderr
    alerts = {r["alert"] for r in _rules()}
    assert alerts == {
        "RelaywatchTLSInterception",
        "RelaywatchStartTLSStripped",
        "RelaywatchTLSDowngraded",
        "RelaywatchRelayUnreachable",
        "RelaywatchProbeWorkerFailing",
        "RelaywatchProbesStale",
        "RelaywatchChainChanged",
        "RelaywatchUnexpectedIssuer",
        "RelaywatchCertificateExpiring",
        "RelaywatchDNSSECBogus",
    }
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == alerts
    for r in _rules():
        assert r["labels"]["severity"] in ("critical", "warning")
        assert r["annotations"]["summary"] and "What to do" in r["annotations"]["description"]


@pytest.mark.peers  # promtool: ~15 s
def test_a_broken_rule_fails_its_unit_tests(tmp_path: Path) -> None:
    broken = RULES.read_text().replace(
        "expr: relaywatch_interception_detected == 1", "expr: relaywatch_interception_detected == 2"
    )
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    test = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert test.returncode != 0 and "RelaywatchTLSInterception" in test.stdout + test.stderr


def _rules() -> list[dict[str, Any]]:
    import yaml

    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_systemd_unit_is_hardened_and_valid(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed here")
    text = UNIT.read_text()
    assert "DynamicUser=yes" in text and "CapabilityBoundingSet=CAP_NET_RAW" in text
    sec = subprocess.run(
        [exe, "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    m = re.search(r"Overall exposure level for relaywatch.service: ([\d.]+)", sec.stdout)
    assert m and float(m.group(1)) <= 2.0, sec.stdout[-500:]
    local = tmp_path / "relaywatch.service"  # verify needs ExecStart to exist: point it at this install
    local.write_text(text.replace("/usr/bin/relaywatch", shutil.which("relaywatch") or "/usr/bin/relaywatch"))
    verify = subprocess.run([exe, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr


@pytest.mark.peers
def test_debian_package_installs_unit_config_and_a_working_venv(tmp_path: Path) -> None:
    build = subprocess.run(
        ["bash", "packaging/deb/build.sh", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    deb = Path(build.stdout.strip().splitlines()[-1])
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], capture_output=True, text=True, timeout=60).stdout
    assert "Package: relaywatch" in info and "Depends: python3 (>= 3.11)" in info
    files = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, timeout=60
    ).stdout
    for path in (
        "./lib/systemd/system/relaywatch.service",
        "./etc/relaywatch/relaywatch.yml",
        "./usr/bin/relaywatch -> /opt/relaywatch/bin/relaywatch",
        "./opt/relaywatch/bin/python",
    ):
        assert path in files, path
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(root)], check=True, timeout=120)
    script = (root / "opt/relaywatch/bin/relaywatch").read_text().splitlines()[0]
    assert script == "#!/opt/relaywatch/bin/python3"
    # bytecode ships, naming where the code will live: the service cannot write it (ProtectSystem=strict)
    sources = sorted(root.glob("opt/relaywatch/lib/python3*/site-packages/relaywatch/**/*.py"))
    assert sources
    for source in sources:  # each one current for its source (mtime and size, as Python checks them)
        pyc = Path(importlib.util.cache_from_source(str(source)))
        head = pyc.read_bytes()[:16]
        flags, mtime, size = struct.unpack("<III", head[4:16])
        assert flags == 0 and mtime == int(source.stat().st_mtime) & 0xFFFFFFFF, pyc
        assert size == source.stat().st_size & 0xFFFFFFFF, pyc
    code = marshal.loads(Path(importlib.util.cache_from_source(str(sources[0]))).read_bytes()[16:])
    assert code.co_filename.startswith("/opt/relaywatch/lib/"), code.co_filename
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, timeout=60
    ).stdout
    assert b"/etc/relaywatch/relaywatch.yml" in conffiles
    run = subprocess.run(
        [
            str(root / "opt/relaywatch/bin/python"),
            "-m",
            "relaywatch",
            "analyze",
            "--at",
            "2022-01-01",
            str(LEAF_2021),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "Verdict:   OK" in run.stdout, run.stderr
