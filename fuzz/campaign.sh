#!/usr/bin/env bash
# A fuzzing campaign (issue 18): every target for a given time, then each
# corpus minimized and what adds coverage merged into the committed seeds.
#
#   bash fuzz/campaign.sh 600                  # every target, 10 min each
#   bash fuzz/campaign.sh 180 hub_ops ws_stream
#   CAMPAIGN_JOBS=2 bash fuzz/campaign.sh 600  # two targets at a time
#   CAMPAIGN_SECONDS_channel_name=1500 bash fuzz/campaign.sh 600
#                                              # one target longer than the rest
#
# Environment:
#   CAMPAIGN_JOBS   targets fuzzed at the same time (default 1);
#   FUZZ_SANITIZER  cargo fuzz's `-s` (default `none`: several times the
#                   executions per second of AddressSanitizer; the crates
#                   under test forbid `unsafe`, and the CI smoke run,
#                   fuzz/run.sh, keeps ASan). Each sanitizer builds into
#                   fuzz/target/<sanitizer>/, apart from run.sh's build.
#   CAMPAIGN_NO_TRACE_COMPARES
#                   targets built with cargo fuzz's `--no-trace-compares`
#                   (default `hub_ops`; empty: none), into
#                   fuzz/target/<sanitizer>-notc/. hub_ops decodes small
#                   opcodes and indices, where comparison tracing finds
#                   little, and the tracing hooks were ~45% of its time
#                   (its oracle compares the whole Hub with a model after
#                   every step): about 2x the executions per second
#                   without them, and more new features per minute
#                   (fuzz/README.md, "Throughput, third look"). The
#                   parsers keep it: it is what finds their magic strings.
#   CAMPAIGN_SECONDS_<target>
#                   that target's time instead of SECONDS (e.g. the cheap
#                   parsers longer: more executions in the same wall time).
#   CAMPAIGN_OUT    folder under fuzz/ for logs and the summary (default
#                   campaign-out).
#   SEED_MAX_BYTES  largest new seed kept (default 128: the committed seeds
#                   stay a few hundred KB).
#
# Per target:
#   1. run on fuzz/corpus/<target>/ (kept between campaigns, not committed;
#      started from seeds/ and regressions/ the first time), niced, with the
#      limits of run.sh, printing libFuzzer's final stats;
#   2. `cargo fuzz cmin` of that corpus (in place);
#   3. `-merge=1` of the minimized corpus into seeds/<target>/: only inputs
#      that add features the seeds lack are copied (named by their SHA-1);
#      the hand-made seeds stay as they are. New seeds over SEED_MAX_BYTES
#      are dropped again, to keep the committed seeds small (they stay in
#      the corpus for the next campaign).
# Logs and a summary go to fuzz/campaign-out/ (not committed; CAMPAIGN_OUT
# names another folder under fuzz/, e.g. for a second campaign running
# beside the first on other targets):
# summary.md has one table row per target (time, executions, exec/s,
# coverage, features, corpus, new seeds) and the total, for the README.
# Any crash fails the script after the remaining targets have run; the
# input is under fuzz/artifacts/<target>/.
#
# Check `cargo test -p realtime-testkit` afterwards: the new seeds replay
# there, and keep the seed directories small (a few hundred KB in all).
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${1:?usage: campaign.sh SECONDS [TARGET...]}
shift
TARGETS=${*:-"hub_ops presence_info channel_name pusher_message http_api ws_stream"}
export RUSTC_BOOTSTRAP=1
JOBS=${CAMPAIGN_JOBS:-1}
SANITIZER=${FUZZ_SANITIZER:-none}
BUILD=(-s "$SANITIZER" --target-dir "target/$SANITIZER")
# Targets built without comparison tracing, in a target dir of their own
# (see the header).
NO_CMP=" ${CAMPAIGN_NO_TRACE_COMPARES-hub_ops} "
BUILD_NO_CMP=(-s "$SANITIZER" --no-trace-compares --target-dir "target/$SANITIZER-notc")

# The `cargo fuzz` build options of target $1.
build_args() {
  if [[ $NO_CMP == *" $1 "* ]]; then
    echo "${BUILD_NO_CMP[@]}"
  else
    echo "${BUILD[@]}"
  fi
}
OUT=${CAMPAIGN_OUT:-campaign-out}
mkdir -p "$OUT" corpus

extra_args() {
  case "$1" in
    ws_stream) echo "-malloc_limit_mb=128" ;;
    *) echo "" ;;
  esac
}

# The value of `stat::<name>:` in libFuzzer's final stats.
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -1; }
# A field (cov, ft, corp) of the last status line ("#N DONE cov: X ft: Y ...").
field() { grep -E '^#[0-9]+' "$1" | tail -1 | sed -n "s/.* $2: \([^ ]*\).*/\1/p"; }

echo "==> building the targets (sanitizer: $SANITIZER)"
for t in $TARGETS; do
  # shellcheck disable=SC2046
  cargo fuzz build $(build_args "$t") "$t"
done

# Fuzzes, minimizes and merges one target; writes its table row to
# $OUT/<target>.row, and $OUT/<target>.failed if it crashed.
campaign() {
  local t=$1 corpus="corpus/$1" log="$OUT/$1.log"
  local own="CAMPAIGN_SECONDS_$1"
  local secs=${!own:-$SECONDS_PER_TARGET}
  rm -f "$OUT/$t.failed" "$OUT/$t.row"
  mkdir -p "$corpus" "seeds/$t"
  if [ -z "$(ls -A "$corpus")" ]; then
    cp -R "seeds/$t/." "$corpus/"
    if [ -d "regressions/$t" ]; then cp -R "regressions/$t/." "$corpus/"; fi
  fi
  echo "==> fuzz $t for ${secs}s (log: fuzz/$log)"
  local start took
  start=$(date +%s)
  # shellcheck disable=SC2046
  if ! nice -n 19 cargo fuzz run $(build_args "$t") "$t" "$corpus" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 $(extra_args "$t") >"$log" 2>&1; then
    echo "==> $t: FAILED (input under fuzz/artifacts/$t/; log fuzz/$log)" >&2
    touch "$OUT/$t.failed"
  fi
  took=$(($(date +%s) - start))
  local execs rate cov ft before added
  execs=$(final_stat "$log" number_of_executed_units)
  rate=$(final_stat "$log" average_exec_per_sec)
  cov=$(field "$log" cov)
  ft=$(field "$log" ft)

  echo "==> minimize fuzz/$corpus"
  # shellcheck disable=SC2046
  nice -n 19 cargo fuzz cmin $(build_args "$t") "$t" "$corpus" -- $(extra_args "$t") \
      >"$OUT/$t.cmin.log" 2>&1 || echo "==> $t: cmin failed (fuzz/$OUT/$t.cmin.log)" >&2
  before=$(ls "seeds/$t" | wc -l)
  ls "seeds/$t" | sort >"$OUT/$t.seeds-before"
  # shellcheck disable=SC2046
  nice -n 19 cargo fuzz run $(build_args "$t") "$t" "seeds/$t" "$corpus" -- -merge=1 \
      -rss_limit_mb=2048 -timeout=10 $(extra_args "$t") >"$OUT/$t.merge.log" 2>&1 ||
    echo "==> $t: merge failed (fuzz/$OUT/$t.merge.log)" >&2
  ls "seeds/$t" | sort | comm -13 "$OUT/$t.seeds-before" - | while read -r f; do
    if [ "$(stat -c %s "seeds/$t/$f")" -gt "${SEED_MAX_BYTES:-128}" ]; then
      rm "seeds/$t/$f"
    fi
  done
  added=$(($(ls "seeds/$t" | wc -l) - before))
  echo "| \`$t\` | $took | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $(ls "$corpus" | wc -l) | $added |" >"$OUT/$t.row"
  echo "==> $t: ${execs:-?} executions in ${took}s (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, $added seeds added"
}

running=0
for t in $TARGETS; do
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  campaign "$t" &
  running=$((running + 1))
done
wait

{
  echo "| target | seconds | executions | exec/s | cov (edges) | ft (features) | corpus after cmin | seeds added |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  total=0
  for t in $TARGETS; do
    cat "$OUT/$t.row" 2>/dev/null || echo "| \`$t\` | ? | ? | ? | ? | ? | ? | ? |"
    n=$(sed -n 's/^| `[a-z_]*` | [0-9]* | \([0-9]*\) |.*/\1/p' "$OUT/$t.row" 2>/dev/null || true)
    total=$((total + ${n:-0}))
  done
  echo
  echo "$total executions in all (sanitizer: $SANITIZER, $JOBS at a time)."
} >"$OUT/summary.md"

echo
cat "$OUT/summary.md"
du -sh seeds
failed=()
for t in $TARGETS; do
  if [ -e "$OUT/$t.failed" ]; then failed+=("$t"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "campaign: failing targets: ${failed[*]}" >&2
  exit 1
fi
