#!/usr/bin/env bash
# Every format of the shipped CBAM-CNN and SE-CNN in one run (ratios are what to compare); set
# WITH_ACCURACY=1 to add accuracy on the shared test split, THREADS=1,2 for more thread counts.
# Writes bench/results/formats_<model>.md and .json.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/pbc_bloodmnist_like_64.npz}
mkdir -p bench/results
for model in ${MODELS:-cbam_cnn se_cnn}; do
  args=(--threads "${THREADS:-1}" --batch-sizes 1,16 --repeats 200
        --markdown "bench/results/formats_$model.md" --json "bench/results/formats_$model.json")
  [ -n "${WITH_ACCURACY:-}" ] && [ -f "$DATA" ] && args+=(--data "$DATA")
  .venv/bin/edgehemo benchmark "$model" "${args[@]}"
done
