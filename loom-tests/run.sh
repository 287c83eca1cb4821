#!/usr/bin/env bash
# The loom stage of CI (issue #6): every model must pass, then every mutant
# must be caught by its model. See loom-tests/README.md.
#
#   bash loom-tests/run.sh            # the whole stage
#   LOOM_MAX_PREEMPTIONS=2 bash loom-tests/run.sh   # a quicker, shallower pass
#
# Builds in release mode with `--cfg loom` into target/loom, so the normal
# build cache (target/debug, target/release) is never invalidated. A mutant
# build adds `--cfg loom_mutant="<name>"` to the `realtime` crate alone
# (through mutant-rustc.sh, sharing the dependencies in target/loom), which
# re-introduces one bug in the Hub; the model named for it must then fail (a
# panic inside loom::model), not merely fail to build. Exits non-zero if a
# model fails or a mutant survives.
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=target/loom
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3}
export CARGO_TERM_COLOR=never
# No debuginfo in these throw-away builds: each mutant rebuilds `realtime`
# and one model, and debuginfo doubles that. Panic messages keep file:line.
export CARGO_PROFILE_RELEASE_DEBUG=false
BASE_FLAGS="--cfg loom"

# Every model file, in the order they start (the longest first).
MODELS=(loom_wakeup loom_bytes loom_fifo loom_subscribe loom_close loom_presence loom_broadcast loom_overflow loom_hub_close)

# mutant name : model file : test that must catch it
MUTANTS=(
  "dead_channel:loom_subscribe:subscribes_racing_last_unsubscribe_keep_the_channel"
  "create_joins_dead:loom_subscribe:a_subscriber_losing_the_race_to_create_never_joins_a_dead_channel"
  "ghost:loom_close:subscribe_racing_close_leaves_no_ghost"
  "empty_channel:loom_close:presence_subscribe_racing_close_leaves_no_phantom_member"
  "presence_order:loom_presence:presence_joins_and_leave_reach_every_member_in_one_order"
  "roster_late:loom_presence:newcomer_gets_its_roster_before_a_racing_broadcast"
  "deliver_after_close:loom_broadcast:broadcast_racing_close_delivers_nothing_after_close_returns"
  "double_close:loom_overflow:disconnect_client_overflow_closes_exactly_once"
  "lost_drop:loom_overflow:drop_message_overflow_counts_every_dropped_frame"
  "reserve_not_atomic:loom_bytes:every_frame_is_delivered_or_dropped_once_and_no_byte_leaks"
  "account_after_push:loom_bytes:a_reader_that_keeps_up_is_never_disconnected_for_a_burst_that_fits"
  "bound_ignores_unsent:loom_bytes:unsent_bytes_count_toward_the_bound_drop_message"
  "reply_dropped:loom_bytes:replies_past_the_bound_close_the_client_exactly_once"
  "reserve_then_undo:loom_bytes:a_reply_is_queued_where_a_broadcast_is_dropped"
  "refuse_on_stale_count:loom_bytes:a_reader_that_keeps_up_is_never_disconnected_for_a_burst_that_fits"
  "add_no_recheck:loom_hub_close:hub_close_racing_attach_and_subscribe_leaves_nothing_registered"
  "lost_wakeup:loom_wakeup:wakeup_is_never_lost_and_never_doubled"
  "wakeup_relaxed:loom_wakeup:wakeup_is_never_lost_and_never_doubled"
  "ring_after_spill:loom_fifo:frames_leave_in_order_across_the_ring_and_the_overflow"
  "pop_skips_unwritten:loom_fifo:a_slot_being_written_is_waited_for_not_passed_over"
  "head_before_take:loom_fifo:frames_leave_in_order_across_the_ring_and_the_overflow"
)

LOG_DIR=$CARGO_TARGET_DIR/logs
mkdir -p "$LOG_DIR"
STAGE_START=$(date +%s)
SUMMARY=()
FAILED=0

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# build FLAGS LOG [cargo test args...]: compiles test binaries (all of them,
# or the ones selected by the extra arguments).
build() {
  local flags=$1 log=$2
  shift 2
  RUSTFLAGS="$flags" cargo test -p loom-tests --release --no-run "$@" >"$log" 2>&1
}

echo "==> loom models (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, target $CARGO_TARGET_DIR)"
t=$(now)
if ! build "$BASE_FLAGS" "$LOG_DIR/build.log"; then
  cat "$LOG_DIR/build.log"
  echo "FATAL: the loom suite does not build" >&2
  exit 1
fi
echo "    built in $(since "$t")s"

# The models run two at a time (the machine's cores; loom is single
# threaded), straight from the binaries built above: `cargo test` would hold
# the build directory's lock while its tests run. The longest models
# (loom_wakeup, loom_bytes, loom_fifo) start first.
run_model() {
  local model=$1 log="$LOG_DIR/$1.log" exe t
  t=$(now)
  exe=$(sed -n "s|.*Executable tests/$model.rs (\(.*\))|\1|p" "$LOG_DIR/build.log")
  # loom::model=info: loom prints "Completed in N iterations" per model.
  if [ -n "$exe" ] && LOOM_LOG=loom::model=info "$exe" --nocapture --test-threads=1 >"$log" 2>&1; then
    echo pass >"$log.status"
  else
    echo FAIL >"$log.status"
  fi
  since "$t" >"$log.time"
}
JOBS=${LOOM_JOBS:-2}
rm -f "$LOG_DIR"/*.status "$LOG_DIR"/*.time
for model in "${MODELS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
    wait -n
  done
  run_model "$model" &
done
wait
for model in "${MODELS[@]}"; do
  log="$LOG_DIR/$model.log"
  status=$(cat "$log.status")
  if [ "$status" != pass ]; then
    FAILED=1
    tail -n 60 "$log"
  fi
  iters=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'Completed in [0-9]* iterations' | awk '{print $3}' | paste -sd+ -)
  line=$(printf '%-6s %-16s %6ss  iterations %s' "$status" "$model" "$(cat "$log.time")" "${iters:-?}")
  echo "    $line"
  SUMMARY+=("model   $line")
done

echo "==> mutants (each must be caught by its model)"
# The mutant's cfg goes to the `realtime` crate alone, through
# mutant-rustc.sh as RUSTC_WORKSPACE_WRAPPER, called by a path named after
# the mutant: cargo then keeps one `realtime` and one set of test binaries per
# mutant (rebuilt only when the sources change) next to the plain build in
# target/loom, and every dependency is shared with it.
WRAPPERS=$CARGO_TARGET_DIR/mutant-wrappers
mkdir -p "$WRAPPERS"
for entry in "${MUTANTS[@]}"; do
  IFS=: read -r mutant model test <<<"$entry"
  t=$(now)
  log="$LOG_DIR/mutant-$mutant.log"
  ln -sfn "$(pwd)/loom-tests/mutant-rustc.sh" "$WRAPPERS/$mutant"
  mutant_cargo() {
    RUSTFLAGS="$BASE_FLAGS" RUSTC_WORKSPACE_WRAPPER="$(pwd)/$WRAPPERS/$mutant" cargo "$@"
  }
  : >"$log"
  if ! mutant_cargo test -p loom-tests --release --no-run --test "$model" >>"$log" 2>&1; then
    status=BUILD-ERROR
    FAILED=1
    tail -n 40 "$log"
  elif mutant_cargo test -p loom-tests --release --test "$model" -- --exact "$test" >>"$log" 2>&1; then
    status=SURVIVED
    FAILED=1
  elif grep -q "^test result: FAILED. 0 passed; 1 failed" "$log" && grep -q "panicked at" "$log"; then
    status=caught
  else
    # Failed, but not as one failing model (a crash, a filter that matched
    # nothing...): not a kill we can trust.
    status=UNCLEAR
    FAILED=1
    tail -n 40 "$log"
  fi
  why=$(grep -m1 -A1 "panicked at" "$log" | tail -n 1 | cut -c1-70)
  line=$(printf '%-11s %-21s %-15s %6ss  %s' "$status" "$mutant" "$model" "$(since "$t")" "$why")
  echo "    $line"
  SUMMARY+=("mutant  $line")
done

echo
echo "==> loom summary (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS), $(( $(date +%s) - STAGE_START ))s in all; logs in $LOG_DIR"
printf '    %s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
  echo "loom stage FAILED: a model failed or a mutant survived" >&2
  exit 1
fi
echo "loom stage passed"
