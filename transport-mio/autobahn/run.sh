#!/usr/bin/env bash
# The Autobahn TestSuite cases against the realtime-mio echo server (R36),
# run with kosoku (`pip install kosoku`: a native runner of the Autobahn
# case files; `kosoku -m fuzzingclient HOST:PORT`).
#
# Builds `transport-mio/examples/echo.rs` in release, starts it on a free
# loopback port, runs every case but a part of 12.* and 13.*
# (permessage-deflate, issue 14: 216 cases of 1000 messages each, 812 s
# for all of them on 2 shared cores, too long for every CI run), then
# reads the per-case verdicts from kosoku's report (index.json: "behavior"
# and "behaviorClose" per case), prints a summary and exits non-zero on:
#   - any case whose behavior or behaviorClose is FAILED (or any verdict
#     other than OK, NON-STRICT, INFORMATIONAL: WRONG CODE, UNCLEAN, ...),
#   - any NON-STRICT case other than 6.4.3 and 6.4.4, the two that
#     tungstenite also has,
#   - 7.1.6 (messages, then a close) without the echo of the message sent
#     right before the close: kosoku always reports that case
#     INFORMATIONAL, so the messages received are checked against the
#     case's OK outcome in its report file,
#   - a case missing from the report, or kosoku not finishing.
#
# 7.1.6 without the echo is re-run alone, up to twice, against the same
# server before it fails the run: the case kills the connection 1 s after
# sending and the echo is timing-dependent (its own EXPECTATION says so);
# one CI run of 600+ lost it (the server's 124 KiB first write arrived,
# then the connection ended after 2 ms; not reproduced in 615 runs of the
# case, alone or in the full suite, quiet and loaded). A re-run that
# echoes passes, and the first miss is printed with the server's log of
# sessions that did not end with the peer's close (RUST_LOG, default
# realtime_mio=debug, kept in $OUT/server.log) so the cause can be found.
# kosoku 0.1.0 also aborts at exit (SIGABRT, exit 134) after writing its
# report, in ~1 run of 7 on a loaded machine: a complete report with exit
# 134 passes with a warning.
#
# kosoku exits 1 when a case fails (UNIMPLEMENTED counts as a failure,
# NON-STRICT does not), so its exit code alone is not the gate.
#
# The permessage-deflate cases run: by default a representative subset,
# 36 of the 216: cases 1, 5 and 11 of each 12.* data set and of each 13.*
# parameter set (16 B and 4 KiB messages, and 8 KiB ones auto-fragmented
# to 256 B: RSV1 on the first frame only; the 13.* sets are the seven
# offers: default, client_no_context_takeover, server_max_window_bits 9
# and 15, and a list of three). AUTOBAHN_DEFLATE=all runs every one of
# them (see BENCHMARKS.md for the last full run). The echo server runs
# with --compression-threshold 0 (AUTOBAHN_THRESHOLD): every echo goes
# through the compressor, and kosoku's 12/13 cases hash a text echo that
# came uncompressed as a str and report ERROR (a harness bug; sending a
# message uncompressed is allowed by RFC 7692).
#
# Environment: AUTOBAHN_OUT (report directory, default target/autobahn),
# AUTOBAHN_CASES (space-separated case globs to run instead of all, for
# local runs), AUTOBAHN_DEFLATE (`subset`, the default, or `all`),
# AUTOBAHN_THRESHOLD (the echo's compression threshold, default 0), KOSOKU
# (the kosoku command, default `kosoku`).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${AUTOBAHN_OUT:-$ROOT/target/autobahn}
KOSOKU=${KOSOKU:-kosoku}
# NON-STRICT verdicts accepted: tungstenite's (a text message whose
# invalid UTF-8 arrives within one frame, in chops).
ALLOWED_NON_STRICT="6.4.3 6.4.4"
# INFORMATIONAL cases that must still echo (see the header).
MUST_ECHO="7.1.6"

command -v "$KOSOKU" >/dev/null 2>&1 || { echo "FATAL: $KOSOKU not found (pip install kosoku)" >&2; exit 1; }

cargo build --release -q -p realtime-mio --example echo
ECHO_BIN="$ROOT/target/release/examples/echo"

rm -rf "$OUT"
mkdir -p "$OUT"
work=$(mktemp -d)
srv=
cleanup() {
  # End of input: the server shuts down (close 1001 to any client left);
  # SIGTERM if it has not exited within 3 s.
  exec 3>&- 2>/dev/null || true
  if [ -n "$srv" ]; then
    for _ in $(seq 1 30); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$srv" 2>/dev/null || true
  fi
  if [ -f "$work/server.err" ]; then cp "$work/server.err" "$OUT/server.log" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The server's stdin is a FIFO this script holds open (fd 3): when the
# script ends, for whatever reason, the server sees end of input and stops.
# --max-secs bounds it even if that fails.
mkfifo "$work/stdin"
exec 3<>"$work/stdin"
RUST_LOG=${RUST_LOG:-realtime_mio=debug} "$ECHO_BIN" 127.0.0.1:0 --max-message $((16 * 1024 * 1024)) --max-secs 1800 --compression-threshold "${AUTOBAHN_THRESHOLD:-0}" \
  <"$work/stdin" >"$work/server.out" 2>"$work/server.err" &
srv=$!

addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^listening on //p' "$work/server.out" 2>/dev/null | head -1 || true)
  [ -n "$addr" ] && break
  kill -0 "$srv" 2>/dev/null || break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/server.err" >&2; echo "FATAL: echo server did not start" >&2; exit 1; }
echo "echo server on $addr (pid $srv)"

args=(-m fuzzingclient -o "$OUT")
# Cases expected in a full report: 301 outside 12.*/13.*, plus those.
expected=$((301 + 216))
if [ "${AUTOBAHN_DEFLATE:-subset}" != all ]; then
  for n in $(seq 1 18); do
    # kosoku's globs match prefixes: excluding N=1 would exclude 10-18.
    case $n in 1 | 5 | 11) ;; *) args+=(-x "12.*.$n" -x "13.*.$n") ;; esac
  done
  expected=$((301 + 36))
fi
for c in ${AUTOBAHN_CASES:-}; do args+=(-i "$c"); done
started=$(date +%s)
set +e
"$KOSOKU" "${args[@]}" "$addr" >"$work/kosoku.out" 2>&1
kosoku_rc=$?
set -e
elapsed=$(( $(date +%s) - started ))
tail -20 "$work/kosoku.out"
echo "kosoku exited $kosoku_rc after ${elapsed}s"

kill -0 "$srv" 2>/dev/null || { cat "$work/server.err" >&2; echo "FATAL: the echo server died during the run" >&2; exit 1; }

[ -f "$OUT/index.json" ] || { cat "$work/kosoku.out" >&2; echo "FATAL: no report in $OUT" >&2; exit 1; }

set +e
python3 - "$OUT/index.json" "$ALLOWED_NON_STRICT" "${AUTOBAHN_CASES:+partial}" "$kosoku_rc" "$expected" <<'PY'
import json, os, sys
from collections import Counter

index_path, allowed, partial, kosoku_rc = sys.argv[1], set(sys.argv[2].split()), sys.argv[3], sys.argv[4]
expected = int(sys.argv[5])
with open(index_path) as f:
    index = json.load(f)
cases = {}
for agent, by_case in index.items():
    cases.update(by_case)

def key(case_id):
    return [int(p) for p in case_id.split(".")]

PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}
counts = Counter()
by_verdict = {}
bad = []
for case_id in sorted(cases, key=key):
    c = cases[case_id]
    behavior, close = c["behavior"], c["behaviorClose"]
    counts[behavior] += 1
    by_verdict.setdefault(behavior, []).append(case_id)
    if behavior not in PASS or close not in PASS:
        bad.append(f"{case_id}: behavior {behavior}, close {close} (code {c.get('remoteCloseCode')})")
    elif behavior == "NON-STRICT" and case_id not in allowed:
        bad.append(f"{case_id}: NON-STRICT (only {' '.join(sorted(allowed))} are accepted)")

print(f"Autobahn: {len(cases)} cases: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
for verdict in sorted(by_verdict):
    if verdict != "OK":
        print(f"  {verdict}: {' '.join(by_verdict[verdict])}")
if not partial and len(cases) < expected:
    bad.append(f"only {len(cases)} cases in the report (expected {expected})")
complete = partial or len(cases) >= expected
if kosoku_rc == "134" and complete and not bad:
    print("WARNING: kosoku aborted at exit (134) after writing a complete report")
elif kosoku_rc != "0" and not bad:
    bad.append(f"kosoku exited {kosoku_rc} (see its output above)")
if bad:
    print("FAILED:")
    for line in bad:
        print(f"  {line}")
    sys.exit(1)
print("Autobahn: verdicts pass (no FAILED case, NON-STRICT only where tungstenite has it)")
PY
verdict=$?
set -e
[ "$verdict" = 0 ] || exit 1

# Whether CASE in the report REPORT_DIR received every message of its OK
# outcome (kosoku's OK list omits the large message sent first, which is
# echoed too): exit 0 yes, 1 no (or no report), 2 the case did not run.
echoed() {
  python3 - "$1/index.json" "$2" <<'PY'
import json, os, sys
index_path, case_id = sys.argv[1], sys.argv[2]
try:
    with open(index_path) as f:
        index = json.load(f)
    case = next((by_case[case_id] for by_case in index.values() if case_id in by_case), None)
    if case is None:
        sys.exit(2)
    with open(os.path.join(os.path.dirname(index_path), case["reportfile"])) as f:
        detail = json.load(f)
except (OSError, ValueError) as e:
    print(f"  {case_id}: no report ({e})")
    sys.exit(1)
received = [e[1] for e in detail["received"] if e[0] == "message"]
wanted = [e[1] for e in detail["expected"].get("OK", []) if e[0] == "message"]
ok = bool(wanted) and all(m in received for m in wanted)
print(f"  {case_id}: {'echoed' if ok else 'no echo before the close: ' + detail['result']}")
sys.exit(0 if ok else 1)
PY
}

# INFORMATIONAL cases whose message exchange must still be the OK one; a
# miss prints the server's log of sessions that did not end with the peer's
# close, then the case runs alone, up to twice.
for case_id in $MUST_ECHO; do
  set +e
  echoed "$OUT" "$case_id"
  rc=$?
  set -e
  [ "$rc" = 1 ] || continue
  echo "server log, sessions not ended by the peer's close:"
  grep -E "websocket closed|closing: " "$work/server.err" | grep -v "ending=PeerClose" | tail -20 || true
  again=1
  for attempt in 1 2; do
    retry="$OUT/retry-$case_id-$attempt"
    set +e
    "$KOSOKU" -m fuzzingclient -o "$retry" -i "$case_id" "$addr" >"$work/retry.out" 2>&1
    echoed "$retry" "$case_id"
    again=$?
    set -e
    [ "$again" = 0 ] && break
  done
  if [ "$again" != 0 ]; then
    echo "Autobahn: FAILED: $case_id without the echo in the run and in 2 re-runs" >&2
    exit 1
  fi
  echo "WARNING: $case_id lost the echo once and echoed when re-run (see the log above)"
done
echo "Autobahn: pass"
