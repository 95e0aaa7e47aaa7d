"""Total PSS of the agent, two source trees compared fairly: interleaved, same machine, same minute.

Why: PSS depends on what else maps the same libraries (a busier machine shares more and reads lower), so
figures from different runs do not compare. This starts `relaywatch run` from each tree in turn (its
`.mypy` folder on PYTHONPATH: `.mypy/relaywatch -> ../agent`), with 20 lab targets at 1 s and with the
default config (two lab targets at 60 s, host inventory on), and reads the sum of PSS of every agent
process after `--settle-s` seconds. A tree is a checkout, e.g. `git worktree add /tmp/before <commit>`.

    python3 bench/pss_compare.py --tree /tmp/before --tree . [--rounds 2] [--settle-s 30]

Writes bench/results/pss_compare.json; exit 0 when it ran, 1 when something failed to run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import (
    RESULTS,
    BenchError,
    agent_process,
    agent_venv_info,
    loadavg,
    missing_trees,
    relay_process,
    result_header,
    tree_env,
    write_agent_config,
    write_default_config,
)
from relaywatch.lab.pki import make_lab_pki

PORTS = range(29500, 29800)  # the only ports this benchmark listens on
TARGETS = 20


def _config(directory: Path, profile: Path, targets: Sequence[str], mode: str) -> Path:
    if mode == "20 targets":
        return write_agent_config(
            directory / "twenty.yml", profile, targets[:TARGETS], "1s", path_traces=False
        )
    return write_default_config(directory / "default.yml", profile, targets[:2])


def _pss(tree: Path, config: Path, directory: Path, settle_s: float) -> dict[str, Any]:
    """The agent's environment carries PYTHONPATH, so an exec'd worker runs the same tree. Each run starts
    from an empty state directory of its own: a baseline left by the run before would load with it."""
    env = tree_env(tree)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=directory))
    with agent_process(config, run / "agent.log", PORTS, env=env) as agent:
        time.sleep(settle_s)
        return agent.pss_mb()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, action="append", required=True, help="a checkout (twice or more)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--settle-s", type=float, default=30.0)
    p.add_argument("--output", type=Path, default=RESULTS / "pss_compare.json")
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.tree]
    missing = missing_trees(trees)
    if len(trees) < 2 or missing or not 1 <= args.rounds <= 10 or not 5 <= args.settle_s <= 600:
        p.error(
            f"two or more checkouts with .mypy/relaywatch (missing: {missing}), rounds 1..10, settle 5..600"
        )
    rows: list[dict[str, Any]] = []
    res = result_header()
    try:
        with tempfile.TemporaryDirectory(prefix="relaywatch-pss-") as tmp:
            directory = Path(tmp)
            profile = make_lab_pki().write(directory)
            res["agent_interpreter"] = agent_venv_info()
            with relay_process(directory, TARGETS, PORTS) as relays:
                targets = relays.targets(TARGETS)
                for r in range(1, args.rounds + 1):
                    for tree in trees:
                        for mode in ("20 targets", "default config"):
                            pss = _pss(
                                tree, _config(directory, profile, targets, mode), directory, args.settle_s
                            )
                            row = {
                                "round": r,
                                "tree": str(tree),
                                "mode": mode,
                                "pss_mb": pss,
                                "load": loadavg(),
                            }
                            rows.append(row)
                            print(
                                f"round {r}  {tree}  {mode:15s}  total PSS {pss['total']:.1f} MB", flush=True
                            )
    except BenchError as exc:
        print(f"pss_compare: {exc}", file=sys.stderr)
        return 1
    res["rows"] = rows
    print()
    for tree in trees:
        for mode in ("20 targets", "default config"):
            totals = [
                row["pss_mb"]["total"] for row in rows if row["tree"] == str(tree) and row["mode"] == mode
            ]
            print(f"{tree!s:40s} {mode:15s} median {statistics.median(totals):.1f} MB  {totals}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
