"""`relaywatch run` end to end: real Prometheus, promtool, Pushgateway, Chromium against the agent
probing the loopback lab."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import psutil
import pytest
from relaywatch.lab.demo import Lab
from relaywatch.lab.pki import make_leaf
from relaywatch.lab.proxies import Resigner
from relaywatch.lab.servers import LabServer, Mail, server_context

from tests.agent_helpers import Agent, lab_config, prometheus, run_agent
from tests.support import (
    StaticHosts,
    families,
    get,
    samples,
    scenario,
    total,
    value,
    wait_for,
    write_key_pair,
    write_pem,
)

pytestmark = pytest.mark.peers
# what neither agent process maps: the system's OpenSSL (the worker's TLS and hashes use cryptography's)
# and bcrypt (basic auth only, main process)
LEFT_OUT = ("/libssl.so", "/libcrypto.so", "/_ssl.", "/_hashlib.", "bcrypt")


def all_probed(agent: Agent, lab: Lab) -> bool:
    text = agent.metrics()
    return all(f'target="{s.target}"' in text for s in lab.scenarios)


def test_real_prometheus_sees_interception(lab: Lab, tmp_path: Path) -> None:
    with run_agent(lab_config(tmp_path, lab)) as agent, prometheus(tmp_path, agent) as base:
        api = f"{base}/query?query="

        def values() -> dict[str, str] | None:
            body = json.loads(get(api + urllib.parse.quote("relaywatch_interception_detected"))[1])
            found = {r["metric"]["scenario"]: r["value"][1] for r in body["data"]["result"]}
            return found if {"mail-shield", "relay"} <= set(found) else None

        found = wait_for(values, 60)
    assert found["mail-shield"] == "1" and found["relay"] == "0"


DETAIL_ONLY = (
    "relaywatch_tls_cipher_info",
    "relaywatch_probe_duration_seconds",
    "relaywatch_probes",
    "relaywatch_probe_total_duration_seconds",
    "relaywatch_leaf_valid_sct_operators",
)


def test_default_metrics_leave_the_detail_families_out(lab: Lab, tmp_path: Path) -> None:
    with run_agent(lab_config(tmp_path, lab, detail=False)) as agent:
        wait_for(lambda: all_probed(agent, lab), 60)
        fams = families(agent.metrics())
    assert not set(DETAIL_ONLY) & set(fams)
    assert {"relaywatch_verdict", "relaywatch_host_probe_duration_seconds"} <= set(fams)


def test_metrics_contract_and_promtool(lab: Lab, tmp_path: Path) -> None:
    with run_agent(lab_config(tmp_path, lab)) as agent:  # detail: every family
        wait_for(lambda: all_probed(agent, lab), 60)
        text = agent.metrics()
    promtool = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
    fams = families(text)
    for name in (
        "relaywatch_probe_success",
        "relaywatch_verdict",
        "relaywatch_interception_detected",
        "relaywatch_interceptor_info",
        "relaywatch_starttls_state",
        "relaywatch_tls_version_info",
        "relaywatch_tls_cipher_info",
        "relaywatch_chain_certificate_info",
        "relaywatch_certificate_not_after_timestamp_seconds",
        "relaywatch_probe_duration_seconds",
        "relaywatch_probes",
        "relaywatch_last_probe_timestamp_seconds",
        "relaywatch_build_info",
        "relaywatch_profile_info",
    ):
        assert name in fams, name
    info = samples(text, "relaywatch_interceptor_info", target=scenario(lab, "mail-shield"))
    assert info and info[0].labels["product"] == "Avast" and info[0].labels["kind"] == "antivirus"
    states = samples(text, "relaywatch_starttls_state", scenario="cisco-asa")
    assert {s.labels["state"]: s.value for s in states}["masked"] == 1.0
    assert sum(s.value for s in states) == 1.0  # a state set: exactly one is 1


def test_every_address_of_a_name_is_probed_apart(lab: Lab, tmp_path: Path, static_hosts: StaticHosts) -> None:
    """A name with an IPv4 and an IPv6 address (through RELAYWATCH_HOSTS_FILE, inherited by the agent):
    each address is its own series, and only the re-signed one reports interception."""
    name = "dual.relaywatch.test"
    static_hosts({name: ["127.0.0.1", "::1"]})
    mail = Mail("smtp", server_context(lab.pki.relay, [lab.pki.issuing]))
    cfg = tmp_path / "relaywatch.yml"

    def both() -> str | None:
        text = agent.metrics()
        return text if 'address="::1"' in text and 'address="127.0.0.1"' in text else None

    with LabServer(mail, "::1") as v6:
        resigner = Resigner(("::1", v6.port), lab.pki.interception_ca)
        with LabServer(resigner, "127.0.0.1", v6.port):
            cfg.write_text(
                f"interval: 30s\ntimeout: 3s\nprofile: {lab.directory}/lab-profile.yml\n"
                f"targets: [smtp://{name}:{v6.port}]\n"
            )
            with run_agent(cfg) as agent:
                text = wait_for(both, 30)
    assert value(text, "relaywatch_interception_detected", address="127.0.0.1") == 1
    assert value(text, "relaywatch_interception_detected", address="::1") == 0
    assert value(text, "relaywatch_verdict", address="::1", verdict="ok") == 1


def test_probe_endpoint_is_restricted(lab: Lab, tmp_path: Path) -> None:
    allow = "probe_allow: ['smtps://127.0.0.*:*', '*.mail.protection.outlook.com:2525']"
    cfg = lab_config(tmp_path, lab, extra=allow)
    with run_agent(cfg) as agent:
        for bypass in (  # issue 10: the allow-list decides on what the probe would reach, not on the text
            "smtp://[::1].mail.protection.outlook.com:2525",
            "smtp://[::ffff:127.0.0.1].mail.protection.outlook.com:2525",
            "tls://[::1]x.mail.protection.outlook.com:2525",
            "smtp://x.mail.protection.outlook.com:2525@127.0.0.1",
        ):
            status, body = get(agent.url + "/probe?target=" + urllib.parse.quote(bypass))
            assert status in (400, 403) and "relaywatch_" not in body, bypass
        shield = urllib.parse.quote(scenario(lab, "mail-shield"))
        for bad in ("../../etc/passwd", str(lab.directory / "lab-profile.yml"), "x" * 300):
            status, body = get(f"{agent.url}/probe?target={shield}&profile={urllib.parse.quote(bad)}")
            assert status == 400 and "/" not in body and len(body) < 200, bad
        status, body = get(agent.url + "/probe?target=" + urllib.parse.quote(scenario(lab, "mail-shield")))
        assert status == 200 and "relaywatch_interception_detected" in body
        assert 'relaywatch_interception_detected{address="127.0.0.1",scenario="mail-shield"' in body
        assert "cisco-asa" not in body  # only that probe's series
        status, _ = get(agent.url + "/probe?target=smtp://10.1.2.3:25")
        assert status == 403
        status, _ = get(agent.url + "/probe?target=example.org:587")
        assert status == 403
        status, body = get(
            agent.url + "/probe?target=smtps://127.0.0.1:1"
        )  # allowed by pattern: refused port
        verdicts = samples(body, "relaywatch_verdict")
        assert status == 200 and [s.labels["verdict"] for s in verdicts if s.value == 1] == ["unreachable"]
        assert value(body, "relaywatch_probe_success") == 0


def test_bad_config_is_refused_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text("interval: 60s\ntargets:\n  - target: smtp.office365.com:587\n    interval: often\n")
    proc = subprocess.run(
        ["python3", "-m", "relaywatch", "run", "--config.file", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"relaywatch: error: {cfg}:4: interval: 'often' is not a duration (like 30s, 5m, 1h)"
    )


def test_reload_keeps_running_config_on_error(lab: Lab, tmp_path: Path) -> None:
    cfg = lab_config(tmp_path, lab)
    good = cfg.read_text()
    with run_agent(cfg) as agent:
        wait_for(lambda: all_probed(agent, lab), 60)
        cfg.write_text("targets: [\n")
        status, body = get(agent.url + "/-/reload", method="POST")
        assert status == 500 and f"{cfg}:2" in body
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert agent.proc.poll() is None and all_probed(agent, lab)
        cfg.write_text(good.replace(scenario(lab, "expired"), "smtp://127.0.0.1:1"))
        status, _ = get(agent.url + "/-/reload", method="POST")
        assert status == 200
        wait_for(lambda: 'target="smtp://127.0.0.1:1"' in agent.metrics(), 30)
        assert scenario(lab, "expired") not in agent.metrics()  # removed with its target


def test_sigterm_is_clean_and_quick(lab: Lab, tmp_path: Path) -> None:
    with run_agent(lab_config(tmp_path, lab)) as agent:
        wait_for(lambda: all_probed(agent, lab), 60)
        start = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)
        rc = agent.proc.wait(10)
        assert rc == 0 and time.monotonic() - start < 3
        assert "Traceback" not in (agent.proc.stderr.read() if agent.proc.stderr else "")


def test_web_config_tls_and_basic_auth(lab: Lab, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    d = lab.directory
    web.write_text(
        f"tls_server_config:\n  cert_file: {d}/relay.pem\n  key_file: {d}/relay.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    ctx = ssl.create_default_context(cafile=str(d / "root.pem"))
    ctx.load_verify_locations(str(d / "issuing.pem"))
    with run_agent(lab_config(tmp_path, lab), "--web.config.file", str(web), ready=False) as agent:
        url = agent.url.replace("http://", "https://").replace("127.0.0.1", "localhost")

        def fetch(user: str, password: str) -> tuple[int, str]:
            auth = base64.b64encode(f"{user}:{password}".encode()).decode()
            req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Basic {auth}"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                    return int(r.status), r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        status, body = wait_for(lambda: fetch("prometheus", "s3cret"), 20)
        assert status == 200 and "relaywatch_build_info" in body
        assert fetch("prometheus", "wrong") == (401, "Unauthorized\n")
        assert fetch("nobody", "s3cret") == (401, "Unauthorized\n")
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP on a TLS port
            urllib.request.urlopen(agent.url + "/metrics", timeout=5)


def test_web_config_client_certificates(lab: Lab, tmp_path: Path) -> None:
    d = lab.directory
    web = tmp_path / "web.yml"
    write_pem(tmp_path / "clients.pem", lab.pki.root, lab.pki.issuing)
    web.write_text(
        f"tls_server_config:\n  cert_file: {d}/relay.pem\n  key_file: {d}/relay.key\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {tmp_path}/clients.pem\n"
    )
    stranger = make_leaf(lab.pki.unknown_ca, ("client.relaywatch.test",), client=True)
    member = make_leaf(lab.pki.issuing, ("prometheus.relaywatch.test",), client=True)
    member_pem, member_key = write_key_pair(tmp_path, "member", member)
    stranger_pem, stranger_key = write_key_pair(tmp_path, "stranger", stranger)
    ctx = ssl.create_default_context(cafile=str(d / "root.pem"))
    ctx.load_verify_locations(str(d / "issuing.pem"))
    with run_agent(lab_config(tmp_path, lab), "--web.config.file", str(web), ready=False) as agent:
        url = agent.url.replace("http://", "https://").replace("127.0.0.1", "localhost") + "/-/healthy"
        time.sleep(1.5)
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(url, context=ctx, timeout=5).read()
        ctx.load_cert_chain(stranger_pem, stranger_key)  # foreign CA
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(url, context=ctx, timeout=5).read()
        good = ssl.create_default_context(cafile=str(d / "root.pem"))
        good.load_verify_locations(str(d / "issuing.pem"))
        good.load_cert_chain(member_pem, member_key)
        with urllib.request.urlopen(url, context=good, timeout=5) as r:
            assert r.status == 200


def _probes(agent: Agent) -> float:
    return total(agent.metrics(), "relaywatch_host_probe_duration_seconds_count")


def _workers(agent: Agent) -> list[psutil.Process]:
    return [c for c in psutil.Process(agent.proc.pid).children() if "relaywatch.run.worker" in c.cmdline()]


def test_main_process_stays_small_and_survives_its_worker(lab: Lab, tmp_path: Path) -> None:
    """TLS, X.509 parsing and the analysis run in the probe worker: the agent's own process never maps
    them, and a worker that dies (say, on hostile input) is replaced while the agent goes on."""
    with run_agent(lab_config(tmp_path, lab, interval="1s")) as agent:
        wait_for(lambda: all_probed(agent, lab), 60)
        maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
        assert "_rust.abi3.so" not in maps and "scapy" not in maps  # cryptography's and pyOpenSSL's binary
        [worker] = _workers(agent)
        assert "_rust.abi3.so" in Path(f"/proc/{worker.pid}/maps").read_text()
        for pid in (agent.proc.pid, worker.pid):
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert not [lib for lib in LEFT_OUT if lib in maps]
        worker.kill()
        before = _probes(agent)
        wait_for(lambda: _probes(agent) > before + len(lab.scenarios), 30)
        assert agent.proc.poll() is None
        [again] = _workers(agent)
        assert "relaywatch_probe_worker_restarts_total 1.0" in agent.metrics()
        maps = Path(f"/proc/{again.pid}/maps").read_text()  # exec'd, not forked: the same holds
        assert "_rust.abi3.so" in maps
        assert not [lib for lib in LEFT_OUT if lib in maps]


def test_profile_edited_on_disk_waits_for_a_checked_reload(lab: Lab, tmp_path: Path) -> None:
    """A broken edit to a profile file must not reach the probes behind the agent's back."""
    for name in ("lab-profile.yml", "root.pem", "issuing.pem", "public-roots.pem", "ct-logs.json"):
        shutil.copy(lab.directory / name, tmp_path / name)
    cfg = tmp_path / "relaywatch.yml"
    relay = scenario(lab, "relay")
    cfg.write_text(f"interval: 1s\ntimeout: 3s\nprofile: {tmp_path}/lab-profile.yml\ntargets: [{relay}]\n")
    with run_agent(cfg) as agent:
        wait_for(lambda: 'verdict="ok"} 1.0' in agent.metrics(), 30)
        (tmp_path / "lab-profile.yml").write_text("name: lab\nanchors: [nowhere.pem]\n")
        before = _probes(agent)
        wait_for(lambda: _probes(agent) >= before + 3, 30)
        text = agent.metrics()
        assert 'verdict="ok"} 1.0' in text and 'verdict="protocol_error"} 1.0' not in text
        status, body = get(agent.url + "/-/reload", method="POST")
        assert status == 500 and "nowhere.pem" in body
