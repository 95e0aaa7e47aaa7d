"""Many agents on the Prometheus stack: 20 agent processes on distinct loopback addresses, discovered by
one site Prometheus through file_sd_configs (the shipped prometheus-site.yml), the fleet recording rules,
and a central Prometheus that receives only the recorded series by remote_write. Every dashboard query
must return data from the site Prometheus."""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from relaywatch.lab.demo import running_lab

from tests.fleet_support import (
    ALERT_RULES,
    RECORDING_RULES,
    FleetPlan,
    Prom,
    fleet,
    fleet_configs,
    fleet_sd,
    prometheus_server,
    site_config,
)
from tests.support import ROOT, free_port, get, wait_for

pytestmark = pytest.mark.peers
AGENTS = 20
DASHBOARD = ROOT / "grafana" / "relaywatch.json"


def _value(prom: Prom, expr: str) -> dict[str, float]:
    """An instant query as {label values joined: value}."""
    out = {}
    for r in prom.query(expr):
        key = ",".join(v for k, v in sorted(r["metric"].items()) if k != "__name__")
        out[key] = float(r["value"][1])
    return out


@pytest.mark.timeout(280)
def test_twenty_agents_one_site_prometheus_and_a_central_store(tmp_path: Path) -> None:
    plan = FleetPlan(AGENTS, interval="5s")
    with running_lab() as lab:
        port = free_port()
        with (
            prometheus_server(
                tmp_path,
                "central",
                {"global": {"scrape_interval": "1m"}},
                "--web.enable-remote-write-receiver",
            ) as central,
            fleet(fleet_configs(tmp_path, plan, lab), port, tmp_path) as agents,
        ):
            sd = fleet_sd(tmp_path / "fleet.json", plan, agents)
            config = site_config(
                sd, [ALERT_RULES, RECORDING_RULES], interval="2s", remote_write=f"{central.api}/write"
            )
            with prometheus_server(tmp_path, "site", config) as site:
                assert len({a.address for a in agents}) == AGENTS
                wait_for(lambda: _value(site, "count(up == 1)") == {"": AGENTS}, 90)
                # every agent has judged every target once: two or three target addresses each
                want = sum(len(plan.scenarios(i)) for i in range(AGENTS))
                wait_for(lambda: _value(site, "count(relaywatch_verdict == 1)") == {"": want}, 90)
                intercepted = {s: float(plan.expected_intercepted(s)) for s in ("hq", "branch")}
                wait_for(
                    lambda: _value(site, "relaywatch:hosts_intercepted:count_by_site") == intercepted, 30
                )
                _check_site(site, plan)
                _check_dashboard(site)
                wait_for(lambda: _value(central, "relaywatch:hosts:count") == {"site-a": AGENTS}, 60)
                names = json.loads(get(f"{central.api}/label/__name__/values")[1])["data"]
                assert names and all(n.startswith("relaywatch:") for n in names), names
                assert _value(central, "relaywatch:hosts_intercepted:count_by_site") == {
                    f"{s},site-a": v for s, v in intercepted.items()
                }


def _check_site(site: Prom, plan: FleetPlan) -> None:
    """The fleet recording rules against what the plan says (a missed scrape may take a moment to mend)."""
    quarter = AGENTS / 4
    want = {
        "relaywatch:hosts:count": {"": AGENTS},
        "relaywatch:hosts_intercepted:count": {"": plan.expected_intercepted()},
        "relaywatch:hosts_intercepted:count_by_product": {"Avast": quarter, "unknown": quarter},
        "relaywatch:hosts:count_by_verdict": {
            "ok": AGENTS,
            "intercepted": 2 * quarter,
            "starttls_stripped": quarter,
        },
        "relaywatch:hosts:count_by_site": {"hq": AGENTS / 2, "branch": AGENTS / 2},
    }

    def got() -> dict[str, dict[str, float]]:
        return {name: _value(site, name) for name in want}

    try:
        wait_for(lambda: got() == want, 30)
    except TimeoutError:
        assert got() == want


def _check_dashboard(site: Prom) -> None:
    """Every variable and every panel query of grafana/relaywatch.json has data over the fleet."""
    dash = json.loads(DASHBOARD.read_text())
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert m, var
        match = urllib.parse.quote(m.group(1).replace("$instance", ".*"))
        values = json.loads(get(f"{site.api}/label/{m.group(2)}/values?match[]={match}")[1])["data"]
        assert len(values) >= (AGENTS if var["name"] == "instance" else 3), (var["name"], values)
    for p in dash["panels"]:
        for t in p["targets"]:
            expr = t["expr"].replace("$instance", ".*").replace("$target", ".*")
            if "relaywatch_dane_status" in expr:
                continue  # only gateway (port 25) targets have it: test_ops.py checks that panel with one
            try:  # rate() needs two scrapes of a series: on a loaded machine the second may still be due
                wait_for(functools.partial(site.query, expr), 20)
            except TimeoutError:
                raise AssertionError((p["title"], expr)) from None
