#!/usr/bin/env bash
# The main job on the simulator (no services needed):
#  0. `drengine status`: what is wrong, and the runbook to plan;
#  1. a guided recovery of a simulated MariaDB cluster whose primary died while a replica
#     lagged: the plan (dry run), then the run with its gates approved by --yes;
#  2. a DR drill of every runbook that has a drill kit, each against its simulated cluster,
#     with the reports (Markdown, HTML, JUnit XML, Prometheus text) listed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
export DRENGINE_LOCK_DIR="${DRENGINE_LOCK_DIR:-$PWD/runs/.locks}"
# Simulated clusters keep what runs did to them; the demo starts from the scenarios each time.
export DRENGINE_SIM_DIR="${DRENGINE_SIM_DIR:-$PWD/runs/.simulated}"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="runs/demo-$stamp"
D=.venv/bin/drengine
status=0

$D lab reset -i inventory/simulated.yaml > /dev/null || status=1
echo "== 0. what is wrong? (exit 1: a cluster needs action) =="
$D status -i inventory/simulated.yaml
echo
echo "== 1. guided recovery: plan (dry run), nothing is changed =="
$D plan mariadb-promote-survivor -i inventory/simulated.yaml -c sim-mariadb --run-dir "$out/plan" || status=1
echo
echo "== 1. guided recovery: run (the cluster is simulated, gates approved with --yes) =="
$D run mariadb-promote-survivor -i inventory/simulated.yaml -c sim-mariadb --yes --run-dir "$out/recovery" || status=1
$D journal verify "$out/recovery" || status=1
echo
echo "== 1. the cluster after the run (status sees what the run did; \`drengine lab reset\` starts it over) =="
$D status -i inventory/simulated.yaml -c sim-mariadb

echo
echo "== 2. DR drills on the simulators =="
drill() {  # runbook inventory cluster fault [objectives...]
  echo "-- drill $1 on $3 ($4)"
  if $D drill run "$1" -i "$2" -c "$3" --fault "$4" "${@:5}" --run-dir "$out/drill-$3-$4" > "$out/drill-$3-$4.log" 2>&1; then
    tail -n 6 "$out/drill-$3-$4.log" | grep -E "DRILL|report:" | head -n 1
  else
    status=1; tail -n 20 "$out/drill-$3-$4.log"
  fi
}
mkdir -p "$out"
drill mariadb-promote-survivor inventory/simulated.yaml sim-mariadb-healthy kill-primary --rto 30 --max-lost-writes 0
drill mariadb-promote-survivor inventory/simulated.yaml sim-mariadb-healthy cut-replication --rto 30 --max-lost-writes 10
drill elasticsearch-reallocate inventory/simulated-elasticsearch.yaml sim-es-healthy kill-node --rto 30 --max-lost-writes 0
drill mongodb-force-primary inventory/simulated-mongodb.yaml sim-mongo-healthy kill-majority --rto 30 --max-lost-writes 0
drill galera-bootstrap-survivor inventory/simulated-galera.yaml sim-galera-healthy kill-two-nodes --rto 30 --max-lost-writes 0
drill ceph-degrade inventory/simulated-ceph.yaml sim-ceph-healthy kill-osds --rto 30 --max-lost-writes 0

echo
echo "== 3. drill history (every drill under $out, regressions against the median of the last ones) =="
$D drill history --runs "$out" --html "$out/history.html" || status=1

echo
echo "== runs of this demo (drengine runs list) =="
$D runs list --runs-dir "$out"
echo
echo "reports (open the .html files in a browser; .prom files are for the node-exporter textfile collector):"
ls -1 "$out"/*/report.html "$out"/*/junit.xml "$out"/*/drill.prom "$out/history.html" 2>/dev/null
exit $status
