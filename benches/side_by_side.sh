#!/usr/bin/env bash
# Two server builds side by side, alternating runs, in one of two scenarios:
#
# - saturated (default): server pinned to core 0 (one worker), loadgen to
#   core 1, 1k connections x 64 B for 8 s; prints each run's delivered
#   frames/s and server CPU (issue 16 item 5).
# - latency: many small channels (issue 16 item 1): 10,000 connections
#   over 1,000 channels of 10, 1,500 signed HTTP publishes/s of one event
#   each for 20 s, server with 2 workers, nothing pinned; prints each run's
#   publish-to-receipt latency p50/p99/p999.
#
#   bash benches/side_by_side.sh BEFORE_BIN_DIR AFTER_BIN_DIR [RUNS] [MODE]
#
# Each BIN_DIR holds a release `realtime-server` and `loadgen` (e.g. copy
# them out of target/release of a worktree at the older commit). PORT
# (default 7101) picks the server's port.
set -euo pipefail
BEFORE=${1:?before bin dir}
AFTER=${2:?after bin dir}
RUNS=${3:-5}
MODE=${4:-saturated}
PORT=${PORT:-7101}
case "$MODE" in
  saturated)
    SERVER_PIN=(taskset -c 0); LOADGEN_PIN=(taskset -c 1)
    SERVER_ARGS=(--workers 1)
    LOADGEN_ARGS=(--connections 1000 --duration 8 --payload 64) ;;
  latency)
    SERVER_PIN=(); LOADGEN_PIN=()
    SERVER_ARGS=(--workers 2 --max-connections 12000)
    # 4 source addresses: 10k sockets per run, and the previous runs'
    # TIME_WAIT ports, never exhaust one address's ephemeral range.
    LOADGEN_ARGS=(--connections 10000 --channels 1000 --rate 1500 --batch 1
      --threads 2 --duration 20 --payload 64 --source-ips 4) ;;
  *) echo "MODE is saturated or latency, not $MODE" >&2; exit 2 ;;
esac
# The server listens with SO_REUSEPORT: a stray server on the same port
# would silently take half the connections.
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
  echo "port $PORT is in use: pick another with PORT=" >&2; exit 2
fi
for i in $(seq 1 "$RUNS"); do
  for which in before after; do
    dir=$BEFORE
    [ "$which" = after ] && dir=$AFTER
    "${SERVER_PIN[@]}" "$dir/realtime-server" --bind 127.0.0.1:$PORT "${SERVER_ARGS[@]}" \
      --app-id 1 --app-key app-key --app-secret app-secret --log-level warn >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    out=$("${LOADGEN_PIN[@]}" "$dir/loadgen" --port $PORT --server-pid $pid \
      "${LOADGEN_ARGS[@]}" 2>&1 | tail -1)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$which run $i ($(cut -d' ' -f1-3 /proc/loadavg)): $out"
  done
done
