"""Alert delivery with the real thing: agents probing lab relays, Prometheus evaluating the shipped rules
(only `for:` shortened), the shipped Alertmanager routing, grouping and inhibition, and a webhook that
records what reaches a person. A mail shield is switched on in front of one agent's relay, then off."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from relaywatch.lab.pki import make_lab_pki
from relaywatch.lab.servers import LabServer, Mail, server_context

from tests.fleet_support import (
    ALERTMANAGER,
    ALERTMANAGER_CONFIG,
    RECORDING_RULES,
    Prom,
    ShortLivedResigner,
    Switch,
    Webhook,
    alertmanager,
    fast_rules,
    fleet,
    prometheus_server,
    site_config,
    test_alertmanager_config,
    webhook_receiver,
    write_sd,
)
from tests.support import free_port, get, wait_for, which


def test_shipped_alertmanager_config_passes_amtool() -> None:
    amtool = which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    check = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "1 inhibit rules" in check.stdout and "2 receivers" in check.stdout


def test_routing_sends_critical_to_the_oncall_and_warnings_by_mail() -> None:
    amtool = which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")

    def route(*labels: str) -> str:
        out = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    assert route("alertname=RelaywatchTLSInterception", "severity=critical") == "oncall"
    assert route("alertname=RelaywatchChainChanged", "severity=warning") == "mail-security"


@pytest.mark.peers
@pytest.mark.timeout(120)
def test_alertmanager_holds_back_what_the_interception_explains(tmp_path: Path) -> None:
    """The shipped inhibition, fed by hand: an interception on one of a target's addresses holds back that
    host's other alerts on the target (another address downgraded, say), not another target's or another
    host's, and those still reach their receiver."""
    if which(ALERTMANAGER) is None:
        pytest.skip("prometheus-alertmanager is not installed")
    now = dt.datetime.now(dt.UTC)

    def alert(name: str, severity: str, instance: str, target: str, address: str) -> dict[str, Any]:
        labels = dict(alertname=name, severity=severity, instance=instance, target=target, address=address)
        span = {"startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(hours=1)).isoformat()}
        return {"labels": labels, "annotations": {}, **span}

    down, issuer = "RelaywatchTLSDowngraded", "RelaywatchUnexpectedIssuer"
    explained = [
        (down, "h1", "t", "a2"),
        (issuer, "h1", "t", "a3"),
        ("RelaywatchChainChanged", "h1", "t", "a4"),  # excluded by their rules on the intercepted address
        ("RelaywatchCertificateExpiring", "h1", "t", "a5"),  # itself, held here on the target's others
    ]
    others = [(down, "h1", "u", "a1"), (down, "h2", "t", "a2")]
    batch = [alert("RelaywatchTLSInterception", "critical", "h1", "t", "a1")]
    batch += [alert(name, "warning", *where) for name, *where in explained + others]
    with (
        webhook_receiver() as hook,
        alertmanager(tmp_path, test_alertmanager_config(tmp_path, hook.url)) as am,
    ):
        body = json.dumps(batch).encode()
        code, reply = get(
            f"{am}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        assert code == 200, reply

        def sent(name: str, instance: str, target: str) -> list[tuple[str, dict[str, Any]]]:
            return [(s, a) for s, a in _for_target(hook, name, target) if a["labels"]["instance"] == instance]

        everything = [*others, ("RelaywatchTLSInterception", "h1", "t", "a1")]
        wait_for(lambda: all(sent(name, instance, target) for name, instance, target, _ in everything), 30)
        for name, instance, target, _ in explained:
            held = [a for a in _am_alerts(am, name) if a["labels"]["instance"] == instance]
            held = [a for a in held if a["labels"]["target"] == target]
            assert held and held[0]["status"]["state"] == "suppressed", held
            assert held[0]["status"]["inhibitedBy"], held
        time.sleep(5)  # more than two group intervals: anything not held back would have been sent by now
        for name, instance, target, _ in explained:
            assert not sent(name, instance, target), hook.notifications()
        paths = {path for path, _ in hook.notifications()}
        assert paths == {"/oncall", "/mail-security"}, paths


def _am_alerts(am: str, name: str) -> list[dict[str, Any]]:
    q = urllib.parse.quote(f'alertname="{name}"')
    alerts: list[dict[str, Any]] = json.loads(get(f"{am}/api/v2/alerts?filter={q}")[1])
    return alerts


def _ever(selector: str) -> str:
    """Any sample of `selector` in the test's lifetime (an instant query misses a resolved alert's series)."""
    return f"count_over_time({selector}[1h])"


def _notified(hook: Webhook, target: str) -> set[str]:
    """Every alert name that reached anyone for `target`, firing or resolved."""
    return {
        a["labels"]["alertname"]
        for _, body in hook.notifications()
        for a in body["alerts"]
        if a["labels"].get("target") == target
    }


def _for_target(hook: Webhook, name: str, target: str) -> list[tuple[str, dict[str, Any]]]:
    return [(s, a) for s, a in hook.alerts(name) if a["labels"].get("target") == target]


@pytest.mark.peers
@pytest.mark.timeout(240)
def test_an_interception_reaches_the_oncall_once_and_resolves(tmp_path: Path) -> None:
    pki = make_lab_pki()
    profile = pki.write(tmp_path / "lab")
    with (
        LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as relay,
        webhook_receiver() as hook,
    ):
        up = ("127.0.0.1", relay.port)
        switch = Switch(up, ShortLivedResigner(up, pki.interception_ca, days=10))
        with LabServer(switch) as shielded:
            clean, watched = f"smtp://127.0.0.1:{relay.port}", f"smtp://127.0.0.1:{shielded.port}"
            configs = []
            for name, targets in (("a", [watched, clean]), ("b", [clean])):
                cfg = tmp_path / f"agent-{name}.yml"
                cfg.write_text(
                    f"interval: 2s\ntimeout: 3s\nprofile: {profile}\npath: {{enabled: false}}\n"
                    "targets:\n" + "".join(f"  - target: {t}\n" for t in targets)
                )
                configs.append(cfg)
            port = free_port()
            agents_at = [(configs[0], "127.0.0.2"), (configs[1], "127.0.0.3")]
            with fleet(agents_at, port, tmp_path) as agents:
                sd = write_sd(
                    tmp_path / "sd.json",
                    [{"targets": [a.instance for a in agents], "labels": {"site": "lab"}}],
                )
                am_cfg = test_alertmanager_config(tmp_path, hook.url)
                with alertmanager(tmp_path, am_cfg) as am:
                    config = site_config(
                        sd,
                        [fast_rules(tmp_path), RECORDING_RULES],
                        alertmanager=am.removeprefix("http://"),
                    )
                    with prometheus_server(tmp_path, "site", config) as prom:
                        _scenario(prom, am, hook, switch, watched, agents[0].instance)


def _scenario(prom: Prom, am: str, hook: Webhook, switch: Switch, watched: str, instance: str) -> None:
    wait_for(lambda: len(prom.query('relaywatch_verdict{verdict="ok"} == 1')) == 3, 60)
    assert not hook.notifications(), hook.notifications()

    switch.on.set()
    fired = wait_for(lambda: _for_target(hook, "RelaywatchTLSInterception", watched), 60)
    status, alert = fired[0]
    assert status == "firing" and alert["labels"]["instance"] == instance
    notes = alert["annotations"]
    product = prom.query(f'relaywatch_interceptor_info{{target="{watched}"}}')[0]["metric"]["product"]
    assert watched in notes["summary"] and watched in notes["description"]
    assert notes["product"] == product and "Avast" in product
    details = notes["details"]
    assert details.startswith(f"http://{instance}/details?target=")
    code, page = get(details)
    assert code == 200 and "intercepted" in page, page[:500]

    # the forged leaf lives 10 days, under the expiry rule's 14: the interception tells it, so the rule leaves
    # the path out from the sample that says "intercepted" on (not even pending), and nothing is held back in
    # Alertmanager that could slip out in the milliseconds between two resolved notifications
    time.sleep(5)  # more than two group intervals: anything not held back would have been sent by now
    short = f'relaywatch_certificate_not_after_timestamp_seconds{{position="0", target="{watched}"}}'
    assert prom.query(f"{short} - time() < 14 * 86400"), prom.query(short)
    assert not prom.query(_ever(f'ALERTS{{alertname="RelaywatchCertificateExpiring", target="{watched}"}}'))
    assert _notified(hook, watched) == {"RelaywatchTLSInterception"}, hook.notifications()

    switch.on.clear()
    wait_for(lambda: _for_target(hook, "RelaywatchTLSInterception", watched)[-1][0] == "resolved", 60)
    time.sleep(3)
    firing = [s for s, _ in _for_target(hook, "RelaywatchTLSInterception", watched) if s == "firing"]
    assert len(firing) == 1, hook.notifications()
    assert _notified(hook, watched) == {"RelaywatchTLSInterception"}, hook.notifications()
    assert not prom.query(_ever(f'ALERTS{{alertname="RelaywatchCertificateExpiring", target="{watched}"}}'))
    receivers = {path for path, _ in hook.notifications()}
    assert receivers == {"/oncall"}, receivers  # critical: the on-call's webhook; nothing else fired
