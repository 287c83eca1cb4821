#!/usr/bin/env bash
# End-to-end suite: pusher-js, laravel-echo and the pusher server SDK against
# the realtime-server binary. Usage: server/e2e/run.sh [node --test args...]
# The binary is $REALTIME_SERVER_BIN, else target/release, else target/debug
# (build it first: cargo build --release -p realtime-server).
set -euo pipefail
cd "$(dirname "$0")"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "e2e: '$tool' is not installed (Node >= 20 and npm are required)" >&2
    exit 1
  fi
done
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "e2e: node $(node -v) is too old (need >= 20)" >&2
  exit 1
fi

npm ci --no-audit --no-fund --prefer-offline
if [ "$#" -gt 0 ]; then
  exec node --test "$@"
fi
exec node --test test/
