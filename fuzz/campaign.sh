#!/usr/bin/env bash
# A fuzzing campaign (issue 18): every target for a given time, one after
# the other, then each corpus minimized and what adds coverage merged into
# the committed seeds.
#
#   bash fuzz/campaign.sh 600                  # every target, 10 min each
#   bash fuzz/campaign.sh 180 hub_ops ws_stream
#
# Per target, in this order:
#   1. run on fuzz/corpus/<target>/ (kept between campaigns, not committed;
#      started from seeds/ and regressions/ the first time), niced, with the
#      limits of run.sh, printing libFuzzer's final stats;
#   2. `cargo fuzz cmin` of that corpus (in place);
#   3. `-merge=1` of the minimized corpus into seeds/<target>/: only inputs
#      that add features the seeds lack are copied (named by their SHA-1);
#      the hand-made seeds stay as they are. New seeds over SEED_MAX_BYTES
#      (default 2048) are dropped again, to keep the committed seeds small
#      (they stay in the corpus for the next campaign).
# Logs and a summary go to fuzz/campaign-out/ (not committed):
# summary.md has one table row per target (time, executions, exec/s,
# coverage, features, corpus, new seeds) for the README. Any crash fails
# the script after the remaining targets have run; the input is under
# fuzz/artifacts/<target>/.
#
# Check `cargo test -p realtime-testkit` afterwards: the new seeds replay
# there, and keep the seed directories small (a few hundred KB in all).
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${1:?usage: campaign.sh SECONDS [TARGET...]}
shift
TARGETS=${*:-"hub_ops presence_info channel_name pusher_message http_api ws_stream"}
export RUSTC_BOOTSTRAP=1
OUT=campaign-out
mkdir -p "$OUT" corpus

extra_args() {
  case "$1" in
    ws_stream) echo "-malloc_limit_mb=128" ;;
    *) echo "" ;;
  esac
}

# The value of `stat::<name>:` in libFuzzer's final stats.
stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -1; }
# A field (cov, ft, corp) of the last status line ("#N DONE cov: X ft: Y ...").
field() { grep -E '^#[0-9]+' "$1" | tail -1 | sed -n "s/.* $2: \([^ ]*\).*/\1/p"; }

echo "==> building the targets"
cargo fuzz build

{
  echo "| target | seconds | executions | exec/s | cov (edges) | ft (features) | corpus after cmin | seeds added |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$OUT/summary.md"

failed=()
for t in $TARGETS; do
  corpus="corpus/$t"
  mkdir -p "$corpus" "seeds/$t"
  if [ -z "$(ls -A "$corpus")" ]; then
    cp -R "seeds/$t/." "$corpus/"
    [ -d "regressions/$t" ] && cp -R "regressions/$t/." "$corpus/"
  fi
  log="$OUT/$t.log"
  echo "==> fuzz $t for ${SECONDS_PER_TARGET}s (log: fuzz/$log)"
  start=$(date +%s)
  # shellcheck disable=SC2046
  if ! nice -n 19 cargo fuzz run "$t" "$corpus" -- \
      -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 $(extra_args "$t") >"$log" 2>&1; then
    echo "==> $t: FAILED (input under fuzz/artifacts/$t/; log fuzz/$log)" >&2
    failed+=("$t")
  fi
  took=$(($(date +%s) - start))
  execs=$(stat "$log" number_of_executed_units)
  rate=$(stat "$log" average_exec_per_sec)
  cov=$(field "$log" cov)
  ft=$(field "$log" ft)

  echo "==> minimize fuzz/$corpus"
  nice -n 19 cargo fuzz cmin "$t" "$corpus" -- $(extra_args "$t") >"$OUT/$t.cmin.log" 2>&1
  before=$(ls "seeds/$t" | wc -l)
  ls "seeds/$t" | sort >"$OUT/$t.seeds-before"
  nice -n 19 cargo fuzz run "$t" "seeds/$t" "$corpus" -- -merge=1 \
      -rss_limit_mb=2048 -timeout=10 $(extra_args "$t") >"$OUT/$t.merge.log" 2>&1
  ls "seeds/$t" | sort | comm -13 "$OUT/$t.seeds-before" - | while read -r f; do
    if [ "$(stat -c %s "seeds/$t/$f")" -gt "${SEED_MAX_BYTES:-2048}" ]; then
      rm "seeds/$t/$f"
    fi
  done
  added=$(($(ls "seeds/$t" | wc -l) - before))
  echo "| \`$t\` | $took | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | $(ls "$corpus" | wc -l) | $added |" >>"$OUT/summary.md"
  echo "==> $t: ${execs:-?} executions in ${took}s (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, $added seeds added"
done

echo
cat "$OUT/summary.md"
du -sh seeds
if [ ${#failed[@]} -gt 0 ]; then
  echo "campaign: failing targets: ${failed[*]}" >&2
  exit 1
fi
