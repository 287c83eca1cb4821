#!/usr/bin/env bash
# Python end-to-end suite: the official Pusher Python server SDK (PyPI
# `pusher`) against the realtime-server binary, observed on raw WebSockets.
# Usage: server/e2e/python/run.sh [pytest args...]
# The binary is $REALTIME_SERVER_BIN, else target/release, else target/debug
# (build it first: cargo build --release -p realtime-server).
# Creates a virtual environment ($E2E_PYTHON_VENV, default .venv here) with
# the pinned requirements. Fails when pytest fails or collects no test.
set -euo pipefail
cd "$(dirname "$0")"

py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null 2>&1; then
  echo "e2e-python: '$py' is not installed (Python >= 3.9 with venv and pip is required)" >&2
  exit 1
fi
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
  echo "e2e-python: $("$py" --version 2>&1) is too old (need >= 3.9)" >&2
  exit 1
fi

venv=${E2E_PYTHON_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv" || {
    echo "e2e-python: '$py -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt

set +e
"$venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "e2e-python: pytest collected no test: that is a failure" >&2
  exit 1
fi
exit "$rc"
