#!/usr/bin/env bash
# A local tickstream cluster on loopback, to try the scale-out: three NATS JetStream servers,
# three analytics nodes (HTTP on 8081, 8082, 8083) and one ingest replaying a recorded day.
#
#   scripts/cluster.sh                      # the bundled IBM/AIG day, replayed at 600x
#   scripts/cluster.sh --replay my.csv      # your own sources (any `tickstream ingest` options)
#   scripts/cluster.sh --feed binance:BTCUSDT,ETHUSDT
#
# Then: curl localhost:8081/v1/cluster, curl localhost:8082/v1/symbols/IBM/stats, open
# http://localhost:8083/ — any node answers any symbol. Kill a node (kill -9) and watch its
# partitions move; Ctrl-C stops everything. Needs nats-server (Debian: apt-get install
# nats-server). Logs and stores are in a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install nats-server)" >&2; exit 1; }
# TICKSTREAM_BIN=target/debug/tickstream uses a binary already built instead.
bin=${TICKSTREAM_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=target/release/tickstream
fi
work=$(mktemp -d -t tickstream-cluster.XXXXXX)
servers=()
pids=()
stop() {
  trap - EXIT INT TERM
  echo "stopping…"
  # tickstream first (nodes give their leases up through NATS), then the servers.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT INT TERM

routes=nats://127.0.0.1:6231,nats://127.0.0.1:6232,nats://127.0.0.1:6233
for i in 1 2 3; do
  nats-server -a 127.0.0.1 -p 423$i -js -sd "$work/nats-$i" --server_name "n$i" \
    --cluster_name tickstream --cluster "nats://127.0.0.1:623$i" --routes "$routes" \
    >"$work/nats-$i.log" 2>&1 &
  servers+=($!)
done
urls=nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233
sleep 2

for i in 1 2 3; do
  "$bin" serve --nats "$urls" --node "node-$i" --listen "127.0.0.1:808$i" >"$work/node-$i.log" 2>&1 &
  pids+=($!)
done

if [ $# -eq 0 ]; then
  set -- --replay data/ibm_aig_20131007_trades.csv --speed 600
fi
"$bin" ingest --nats "$urls" --listen 127.0.0.1:8090 "$@" >"$work/ingest.log" 2>&1 &
pids+=($!)

echo "NATS: $urls"
echo "nodes: http://127.0.0.1:8081 http://127.0.0.1:8082 http://127.0.0.1:8083 (ingest: http://127.0.0.1:8090)"
echo "logs: $work"
echo "try: curl -s localhost:8081/v1/cluster; curl -s localhost:8082/v1/symbols/IBM/stats"
wait
