#!/usr/bin/env bash
# `make bench`: install the bench venv and the peers (once), run the side-by-side benchmark,
# then write the plot and the generated tables in docs/PERFORMANCE.md.
#   BENCH_QUICK=1 make bench     # about 3 minutes: cheap upstream only, 1 repetition, 4 s runs
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/setup.sh
PY=var/bench-peers/bench/venv/bin/python
"$PY" bench/runner.py
"$PY" bench/report.py bench/results/latest.json
