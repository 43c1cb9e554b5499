#!/usr/bin/env bash
# The GPU session's check, as one short script (about 10 minutes of device time at most).
#
# On the project's GPU machine, from the project root of a copied working tree
# (with .device-wheels/ made beforehand by ../shared/device/prepare-wheels.sh):
#
#     bash scripts/device_check.sh
#
# It installs the wheels the machine lacks (captum, PyMaxflow), then runs
#   1. mixviz doctor --quick  (about a minute: does every policy x loss train on the GPU?)
#   2. mixviz doctor          (the full report: CPU-vs-GPU agreement, bf16 + channels_last,
#                              resume, epoch time with and without torch.compile, per-policy
#                              step ratios, the DM loss against soft-target CE on the GPU)
# each under a time limit, writing Markdown + JSON reports and logs to $OUT.  The doctor
# rewrites its report after every check, so a run that hits the limit keeps what it had.
# Commit $OUT/doctor-cuda.md (and .json) as benchmarks/results/doctor-cuda.md: scripts/update_readme.py
# puts it in the README's Speed section.
#
# A dry run on a machine without a GPU:   DEVICE=cpu QUICK_ONLY=1 PYTHON=.venv/bin/python bash scripts/device_check.sh
#
# Environment: OUT (default: a new temporary folder), DEVICE (cuda), PYTHON (python3), BUDGET (seconds for
# both runs, default 540), QUICK_BUDGET (default 150), QUICK_ONLY (set: skip the full run).
set -uo pipefail

OUT=${OUT:-$(mktemp -d)}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
QUICK_BUDGET=${QUICK_BUDGET:-150}
tag=${DEVICE%%:*}
mkdir -p "$OUT"
start=$(date +%s)

if compgen -G ".device-wheels/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-deps --no-index .device-wheels/*.whl 2>&1 | tail -3
fi
export PYTHONPATH=. PYTHONUNBUFFERED=1
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| cuda available:', torch.cuda.is_available(),
'|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

timeout "$QUICK_BUDGET" "$PYTHON" -m mixviz doctor --quick --device "$DEVICE" \
  --out "$OUT/doctor-$tag-quick.md" > "$OUT/doctor-$tag-quick.log" 2>&1
quick=$?
echo "quick doctor: exit $quick ($(( $(date +%s) - start )) s)"
tail -n 4 "$OUT/doctor-$tag-quick.log"

full=skipped
if [ -z "${QUICK_ONLY:-}" ]; then
  left=$(( BUDGET - ($(date +%s) - start) ))
  if [ "$left" -gt 60 ]; then
    timeout "$left" "$PYTHON" -m mixviz doctor --device "$DEVICE" \
      --out "$OUT/doctor-$tag.md" > "$OUT/doctor-$tag.log" 2>&1
    full=$?
    echo "full doctor: exit $full ($(( $(date +%s) - start )) s; 124 = stopped at the time limit)"
    tail -n 4 "$OUT/doctor-$tag.log"
  else
    echo "full doctor: not run, only $left s left"
  fi
fi
grep -h "FAIL" "$OUT"/doctor-"$tag"*.md 2>/dev/null | head -n 20
echo "reports in $OUT: $(ls "$OUT" | tr '\n' ' ')"
[ "$quick" = 0 ] && { [ "$full" = 0 ] || [ "$full" = skipped ]; }
