#!/usr/bin/env bash
# Short fuzz run of every target (the CI smoke run; scripts/test calls it).
#
#   FUZZ_SECONDS=15 bash fuzz/run.sh            # every target, 15 s each
#   FUZZ_TARGETS="hub_ops" FUZZ_SECONDS=600 bash fuzz/run.sh
#
# Each target starts from a temporary copy of fuzz/seeds/<target>/ (the
# committed seeds stay as they are). Any crash, leak, timeout or OOM fails
# the script; libFuzzer leaves the input under fuzz/artifacts/<target>/.
# Copy it to fuzz/regressions/<target>/ once understood: the replay test
# (testkit/tests/fuzz_replay.rs) then runs it in every `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS=${FUZZ_SECONDS:-15}
TARGETS=${FUZZ_TARGETS:-"hub_ops presence_info channel_name pusher_message http_api ws_stream"}
# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the
# stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Per-target libFuzzer options beyond the common ones.
extra_args() {
  case "$1" in
    # A hostile byte stream must not make the decoder allocate more than a
    # bounded message (the largest max-message class is 16 MiB).
    ws_stream) echo "-malloc_limit_mb=128" ;;
    *) echo "" ;;
  esac
}

failed=()
for t in $TARGETS; do
  corpus=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$t.XXXXXX")
  if [ -d "seeds/$t" ]; then
    cp -R "seeds/$t/." "$corpus/"
  fi
  echo "==> fuzz $t for ${FUZZ_SECONDS}s"
  # shellcheck disable=SC2046
  if cargo fuzz run "$t" "$corpus" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
      $(extra_args "$t"); then
    echo "==> $t: ok"
  else
    echo "==> $t: FAILED (input under fuzz/artifacts/$t/)" >&2
    failed+=("$t")
  fi
  rm -rf "$corpus"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: every target ran ${FUZZ_SECONDS}s without a crash"
