#!/usr/bin/env bash
# The test command: set up this machine (idempotent), then lint, the format check, the type check, the
# unit lane (pure tests, under a minute) and the peer tests (lab servers, agents, Postfix, sslsplit,
# Prometheus, Chromium, namespaces). Arguments go to both pytest runs: `bash scripts/test.sh -k verdict -x`.
# .pre-commit-config.yaml runs the same first four commands before a commit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# This checkout's own code, whatever an editable install points at (.mypy/relaywatch -> ../agent).
export PYTHONPATH="$PWD/.mypy${PYTHONPATH:+:$PYTHONPATH}"

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
# the benchmarks too: scripts that import their shared bench/common.py by name
MYPYPATH="$PWD/bench" python3 -m mypy bench

lane() {  # one pytest run; exit 5 (nothing selected, e.g. `-k` names tests of the other lane only) passes
  local rc=0
  python3 -m pytest -q -p no:cacheprovider "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest $*: no tests selected"
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
}
lane -m "not peers" "$@"
lane -m peers "$@"
