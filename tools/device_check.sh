#!/usr/bin/env bash
# The device check in one command for a session lent a GPU: the project's venv (or python3), a 9-minute cap, the
# section written into benchmarks/RESULTS.md. Extra arguments go to tools/device_check.py (e.g. --only "NCCL group").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
exec timeout 540 "$PY" tools/device_check.py --out benchmarks/RESULTS.md "$@"
