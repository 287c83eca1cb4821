#!/usr/bin/env bash
# RUSTC_WRAPPER used by run.sh for mutant builds: passes
# `--cfg loom_mutant="$LOOM_MUTANT"` to rustc when it compiles the crate
# `realtime`, and nothing else changes. Putting the cfg in RUSTFLAGS instead
# would give every dependency new flags, hence a full rebuild of all of
# them per mutant. Cargo does not see LOOM_MUTANT, so run.sh runs
# `cargo clean -p realtime` in the mutants' own target dir before each build.
rustc=$1
shift
prev=
for arg in "$@"; do
  if [ "$prev" = "--crate-name" ] && [ "$arg" = "realtime" ] && [ -n "${LOOM_MUTANT:-}" ]; then
    exec "$rustc" "$@" --cfg "loom_mutant=\"$LOOM_MUTANT\""
  fi
  prev=$arg
done
exec "$rustc" "$@"
