#!/usr/bin/env bash
# Thread hops of one server build in the many-small-channels scenario
# (issue 16 item 1): voluntary and involuntary context switches of all the
# server's threads per publish, read from /proc/$PID/task/*/status at 9 s
# and 19 s of a 20 s run at 1,500 publishes/s (15,000 publishes between),
# plus the transport's wake-up counters from /metrics.
#
#   bash benches/ctx_per_publish.sh BIN_DIR [PORT]
set -euo pipefail
dir=${1:?bin dir with realtime-server and loadgen}
port=${2:-7102}
sum() { cat /proc/"$1"/task/*/status 2>/dev/null | awk -v k="$2" '$1 ~ k {s+=$2} END {print s}'; }
out=$(mktemp)
"$dir/realtime-server" --bind 127.0.0.1:"$port" --workers 2 --max-connections 12000 \
  --app-id 1 --app-key app-key --app-secret app-secret --log-level warn >/dev/null 2>&1 &
spid=$!
sleep 0.5
"$dir/loadgen" --port "$port" --server-pid $spid --connections 10000 --channels 1000 \
  --rate 1500 --batch 1 --threads 2 --duration 20 --payload 64 --source-ips 4 >"$out" 2>&1 &
lpid=$!
sleep 9; a=$(sum $spid ^voluntary); ai=$(sum $spid nonvoluntary)
sleep 10; b=$(sum $spid ^voluntary); bi=$(sum $spid nonvoluntary)
w=$(curl -s "http://127.0.0.1:$port/metrics" | grep -E "^realtime_transport_(loop_wakeups|local_wakes)" | tr "\n" " " || true)
wait $lpid; kill $spid; wait $spid 2>/dev/null || true
echo "$dir ($(cut -d' ' -f1-3 /proc/loadavg)): voluntary/publish $(echo "($b-$a)/15000" | bc -l | cut -c1-5)" \
  "involuntary/publish $(echo "($bi-$ai)/15000" | bc -l | cut -c1-5); $w; $(tail -1 "$out" | grep -o 'latency[^;]*')"
rm -f "$out"
