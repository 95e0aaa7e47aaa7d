"""The agent's other faces: the status page in a real browser, Pushgateway and textfile outputs, the
evidence log, and the bounds on series."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from relaywatch.lab.demo import Lab
from relaywatch.lab.pki import make_ca
from relaywatch.lab.proxies import Resigner
from relaywatch.lab.servers import LabServer

from tests.agent_helpers import lab_config, run_agent, service
from tests.support import cn_name, free_port, get, samples, scenario, series_set, wait_for, which

pytestmark = pytest.mark.peers
XSS = "<script>document.title='XSS'</script><b>x"


def chromium_dom(url: str, tmp: Path) -> str:
    exe = which("chromium") or "/usr/bin/chromium"
    proc = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'chromium'}",
            "--virtual-time-budget=2000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_status_page_in_chromium_shows_interceptor_and_escapes(lab: Lab, tmp_path: Path) -> None:
    port = int(scenario(lab, "relay").rsplit(":", 1)[1])
    evil_ca = make_ca(cn_name(XSS))
    with LabServer(Resigner(("127.0.0.1", port), evil_ca)) as evil:
        cfg = lab_config(tmp_path, lab)
        cfg.write_text(
            cfg.read_text() + f"  - target: smtp://127.0.0.1:{evil.port}\n    labels: {{scenario: evil}}\n"
        )
        with run_agent(cfg) as agent:
            wait_for(
                lambda: f'127.0.0.1:{evil.port}"' in agent.metrics() and "Avast" in get(agent.url)[1], 60
            )
            page = chromium_dom(agent.url + "/", tmp_path)
            shield = scenario(lab, "mail-shield")
            row = next(r for r in page.split("</tr>") if shield in r)
            assert "intercepted" in row and "Avast" in row
            evil_row = next(r for r in page.split("</tr>") if f"127.0.0.1:{evil.port}<" in r)
            [evil_id] = re.findall(r"/details\?id=(\d+)", evil_row)
            detail = chromium_dom(f"{agent.url}/details?id={evil_id}", tmp_path)
    assert "<title>relaywatch:" in detail and "XSS</title>" not in detail  # the script never ran
    assert "&lt;script\\&gt;document.title='XSS'" in detail  # shown as text (RFC 4514 escapes < and >)
    assert "<script>document.title" not in detail and "<b>x" not in detail


def test_pushgateway_and_textfile_carry_the_same_series(lab: Lab, tmp_path: Path) -> None:
    port = free_port()
    exe = which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
    textfile = tmp_path / "relaywatch.prom"
    with service(
        [exe, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        f"http://127.0.0.1:{port}/-/ready",
    ):
        args = ("--push.gateway", f"http://127.0.0.1:{port}", "--textfile", str(textfile))
        # path traces off: a trace that lands between the scrape and the writes would add its series to one
        # side only (tracers answer within a second now); the outputs' equivalence is what is tested
        config = lab_config(tmp_path, lab, interval="30s", extra="path: {enabled: false}")
        with run_agent(config, *args) as agent:
            wait_for(lambda: all(s.target in agent.metrics() for s in lab.scenarios), 60)
            scraped = agent.metrics()

            def pushed() -> str | None:
                text = get(f"http://127.0.0.1:{port}/metrics")[1]
                return text if all(s.target in text for s in lab.scenarios) else None

            gateway = wait_for(pushed, 30)
            wait_for(
                lambda: textfile.exists() and all(s.target in textfile.read_text() for s in lab.scenarios), 30
            )
            on_disk = textfile.read_text()
    expected = series_set(scraped)
    assert len(expected) > 100
    assert series_set(on_disk) == expected
    assert series_set(str(gateway), drop=("job", "instance")) >= expected
    assert not list(tmp_path.glob(".relaywatch.prom.*"))  # written atomically, nothing left behind


def test_evidence_log_has_chain_and_transcript(lab: Lab, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with run_agent(lab_config(tmp_path, lab, interval="30s"), "--events.file", str(events)) as agent:
        wait_for(lambda: events.exists() and len(events.read_text().splitlines()) >= len(lab.scenarios), 60)
        assert agent.proc.poll() is None
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    shield = next(e for e in lines if e["labels"]["scenario"] == "mail-shield")
    assert shield["event"] == "verdict_change" and shield["verdict"] == "intercepted"
    assert shield["previous_verdict"] is None
    chain = shield["result"]["chain"]
    assert chain and all(c["pem"].startswith("-----BEGIN CERTIFICATE-----") for c in chain)
    assert any(t["text"] == "STARTTLS" for t in shield["result"]["transcript"])
    assert shield["result"]["interceptor"]["product"] == "Avast"


def test_probe_of_unconfigured_profile_param(lab: Lab, tmp_path: Path) -> None:
    """/probe?profile= picks another profile for that probe (here: microsoft365, so the lab is foreign)."""
    relay = scenario(lab, "relay")
    with run_agent(lab_config(tmp_path, lab, interval="30s")) as agent:
        _, lab_view = get(f"{agent.url}/probe?target={urllib.parse.quote(relay)}")
        _, ms_view = get(f"{agent.url}/probe?target={urllib.parse.quote(relay)}&profile=microsoft365")
        status, _ = get(f"{agent.url}/probe?target={urllib.parse.quote(relay)}&profile=nope")
    assert "relaywatch_interception_detected" in lab_view and status == 400

    def detected(text: str) -> list[float]:
        return [s.value for s in samples(text, "relaywatch_interception_detected")]

    assert detected(lab_view) == [0.0] and detected(ms_view) == [1.0]
