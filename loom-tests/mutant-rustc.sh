#!/usr/bin/env bash
# RUSTC_WORKSPACE_WRAPPER for run.sh's mutant builds. run.sh invokes it
# through a symlink named after the mutant (target/loom/mutant-wrappers/
# <mutant>), and it passes `--cfg loom_mutant="<mutant>"` to rustc when it
# compiles the crate `realtime`; everything else goes through unchanged.
#
# Why a wrapper and not RUSTFLAGS: RUSTFLAGS changes every crate's flags,
# hence one more build of every dependency per mutant. A workspace wrapper
# applies to workspace members only, and cargo hashes its path into their
# artifact names: each mutant gets its own `realtime` and test binaries,
# cached across runs, while every dependency is shared with the plain
# `--cfg loom` build in the same target dir.
rustc=$1
shift
mutant=$(basename "$0")
prev=
for arg in "$@"; do
  if [ "$prev" = "--crate-name" ] && [ "$arg" = "realtime" ]; then
    exec "$rustc" "$@" --cfg "loom_mutant=\"$mutant\""
  fi
  prev=$arg
done
exec "$rustc" "$@"
