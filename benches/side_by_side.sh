#!/usr/bin/env bash
# Saturated delivery, two server builds side by side, alternating runs:
# server pinned to core 0 (one worker), loadgen to core 1, 1k connections
# x 64 B for 8 s; prints each run's delivered frames/s and server CPU.
#
#   bash benches/side_by_side.sh BEFORE_BIN_DIR AFTER_BIN_DIR [RUNS]
#
# Each BIN_DIR holds a release `realtime-server` and `loadgen` (e.g. copy
# them out of target/release of a worktree at the older commit).
set -euo pipefail
BEFORE=${1:?before bin dir}
AFTER=${2:?after bin dir}
RUNS=${3:-5}
PORT=7101
for i in $(seq 1 "$RUNS"); do
  for which in before after; do
    dir=$BEFORE
    [ "$which" = after ] && dir=$AFTER
    taskset -c 0 "$dir/realtime-server" --bind 127.0.0.1:$PORT --workers 1 \
      --app-id 1 --app-key app-key --app-secret app-secret --log-level warn >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    out=$(taskset -c 1 "$dir/loadgen" --port $PORT --server-pid $pid \
      --connections 1000 --duration 8 --payload 64 2>&1 | tail -1)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$which run $i ($(cut -d' ' -f1-3 /proc/loadavg)): $out"
  done
done
