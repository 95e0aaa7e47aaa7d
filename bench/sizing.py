"""Series counts from the agent's real output, for the fleet sizing table in README.

Runs `relaywatch run` against the loopback lab (one target per scenario), reads /metrics, and counts
series per target (by scenario: a clean relay, an interceptor, a stripper) and per host (series with no
target label). Usage: python3 bench/sizing.py"""

from __future__ import annotations

import collections
import sys
import tempfile
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relaywatch.lab.demo import running_lab

from tests.agent_helpers import lab_config, run_agent
from tests.support import wait_for


def main() -> int:
    with running_lab() as lab, tempfile.TemporaryDirectory() as tmp:
        cfg = lab_config(Path(tmp), lab, interval="30s", extra="path: {timeout: 1s}")
        with run_agent(cfg) as agent:
            wait_for(lambda: agent.metrics().count("relaywatch_path_status{") >= 4 * len(lab.scenarios), 120)
            text = agent.metrics()
    per_target: collections.Counter[str] = collections.Counter()
    per_host = 0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if "scenario" in s.labels:
                per_target[s.labels["scenario"]] += 1
            else:
                per_host += 1
    print(f"{'scenario':18} series")
    for name, n in sorted(per_target.items()):
        print(f"{name:18} {n}")
    typical = max(per_target["relay"], per_target["mail-shield"])
    print(f"\nper host (fixed): {per_host}")
    targets = 2  # the default config: smtp.office365.com:587 and outlook.office365.com:993
    addresses = 2  # IPv4 and IPv6 per target, typically
    host = per_host + targets * addresses * typical
    print(f"per host, default config ({targets} targets x {addresses} addresses): {host}")
    for hosts in (10, 1_000, 100_000):
        print(f"{hosts:>7} hosts: {hosts * host:>12,} series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
