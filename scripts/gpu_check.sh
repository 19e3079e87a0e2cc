#!/usr/bin/env bash
# The checks a session with a lent GPU runs, in at most 8 minutes (see parity/gpu_check.py):
#   bash scripts/gpu_check.sh OUTDIR [--data-dir DIR] [--stages devices bench train parity] [--dry-run]
# Writes OUTDIR/summary.md and summary.json (stages, goals), devices.json, bench_b128.json, bench_b512.json,
# train/ (the run) and time_to_85.json, parity_small.json and parity_default.json, and one log per stage.
# Uses $PYTHON (default: this checkout's .venv, else python on PATH) with this checkout first on PYTHONPATH.
set -euo pipefail
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bash scripts/gpu_check.sh OUTDIR [--data-dir DIR] [--stages ...] [--dry-run]" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export NO_ALBUMENTATIONS_UPDATE=1
default_python=python
[ -x "$repo/.venv/bin/python" ] && default_python="$repo/.venv/bin/python"
exec "${PYTHON:-$default_python}" -m parity.gpu_check "$@"
