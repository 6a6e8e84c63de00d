#!/usr/bin/env bash
# The main job on the simulator: a guided recovery of a simulated MariaDB cluster whose
# primary died while one replica lagged. First the plan (dry run), then the run itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export DRENGINE_LOCK_DIR="${DRENGINE_LOCK_DIR:-$PWD/runs/.locks}"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
echo "== plan (dry run): nothing is changed =="
.venv/bin/drengine plan mariadb-promote-survivor -i inventory/simulated.yaml -c sim-mariadb --run-dir "runs/demo-$stamp-plan"
echo
echo "== run: gates approved with --yes (this cluster is simulated) =="
.venv/bin/drengine run mariadb-promote-survivor -i inventory/simulated.yaml -c sim-mariadb --yes --run-dir "runs/demo-$stamp"
echo
.venv/bin/drengine journal verify "runs/demo-$stamp"
