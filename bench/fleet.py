"""Fleet figures for the README's sizing table: N agents (default 20) on loopback addresses probing the
lab (the test fleet of tests/test_fleet.py), scraped by one Prometheus through file_sd_configs with the
shipped alert and recording rules. Reports series ingested per agent (default metric set), scrape
duration, the agents' memory, and the query time of every dashboard panel query over the fleet.
Not a test: run it by hand (about 2 minutes; 2 cores shared). Measured (20 agents, 55 target addresses,
--settle 45): 48 to 74 series per agent (median 68), 23.4 per target address with the host's own;
scrape 1.6 ms median, 3.0 ms max; agent RSS (main + probe worker) 76 MB; dashboard queries 0.8 to 8.4 ms.

    PYTHONPATH=$PWD/.mypy python3 bench/fleet.py [--agents 20] [--settle 60] [--repeat 20]"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relaywatch.lab.demo import running_lab  # noqa: E402

from tests.fleet_support import (  # noqa: E402
    ALERT_RULES,
    RECORDING_RULES,
    FleetAgent,
    FleetPlan,
    Prom,
    fleet,
    fleet_configs,
    fleet_sd,
    prometheus_server,
    site_config,
)
from tests.support import free_port, get, wait_for  # noqa: E402


def _scalar(prom: Prom, expr: str) -> float:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else float("nan")


def _rss_mb(agents: list[FleetAgent]) -> list[float]:
    """Main process plus its probe worker, per agent."""
    out = []
    for a in agents:
        p = psutil.Process(a.proc.pid)
        out.append(sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20)
    return out


def _query_ms(prom: Prom, expr: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        get(f"{prom.api}/query?query={urllib.parse.quote(expr)}")
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--settle", type=float, default=60, help="seconds of scraping before measuring")
    ap.add_argument("--repeat", type=int, default=20, help="runs of each dashboard query")
    args = ap.parse_args()
    plan = FleetPlan(args.agents, interval="5s")
    dash = json.loads((ROOT / "grafana" / "relaywatch.json").read_text())
    with tempfile.TemporaryDirectory(prefix="relaywatch-fleet-") as d, running_lab() as lab:
        tmp = Path(d)
        with fleet(fleet_configs(tmp, plan, lab), free_port(), tmp) as agents:
            sd = fleet_sd(tmp / "fleet.json", plan, agents)
            config = site_config(sd, [ALERT_RULES, RECORDING_RULES], interval="5s")
            with prometheus_server(tmp, "site", config) as prom:
                wait_for(lambda: _scalar(prom, "count(up == 1)") == args.agents, 120)
                time.sleep(args.settle)
                per_agent = prom.query('scrape_samples_scraped{job="relaywatch"}')
                samples = [float(r["value"][1]) for r in per_agent]
                addresses = _scalar(prom, "count(relaywatch_probe_success)")
                rss = _rss_mb(agents)
                print(f"agents: {len(agents)}, target addresses: {addresses:.0f}")
                print(
                    f"series per agent (default metric set): min {min(samples):.0f}, "
                    f"median {statistics.median(samples):.0f}, max {max(samples):.0f}; "
                    f"per target address: {sum(samples) / addresses:.1f}"
                )
                dur = [
                    float(r["value"][1]) * 1000
                    for r in prom.query('scrape_duration_seconds{job="relaywatch"}')
                ]
                print(f"scrape duration: median {statistics.median(dur):.1f} ms, max {max(dur):.1f} ms")
                print(
                    f"agent RSS (main + worker): median {statistics.median(rss):.1f} MB, "
                    f"max {max(rss):.1f} MB"
                )
                tsdb = json.loads(get(f"{prom.api}/status/tsdb")[1])["data"]["headStats"]
                print(f"Prometheus head series: {tsdb['numSeries']} (scraped samples: {sum(samples):.0f})")
                print("\n| panel | query | median ms |\n|---|---|---:|")
                for p in dash["panels"]:
                    for t in p["targets"]:
                        expr = t["expr"].replace("$instance", ".*").replace("$target", ".*")
                        ms = _query_ms(prom, expr, args.repeat)
                        short = expr if len(expr) <= 70 else expr[:67] + "..."
                        print(f"| {p['title']} | `{short}` | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
