#!/usr/bin/env bash
# Rebuild every shipped file from the training runs: pick seeds on validation, record test
# metrics in the cards, export the artifacts and measure them, draw the docs' figures.
# Training itself (hours on 2 cores): see docs/training.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/pbc_bloodmnist_like_64.npz}
PY=.venv/bin/python
# the lab-only CBAM-CNN (3 seeds), kept as weights for comparison
$PY scripts/ship_weights.py cbam_cnn_lab runs/cbam_cnn_s0 runs/cbam_cnn_s1 runs/cbam_cnn_s2 --data "$DATA"
# the default CBAM-CNN: trained for other microscopes (runs/queue3.sh in docs/robustness.md),
# chosen over cbam_field_s0 on the validation robustness proxy
$PY scripts/ship_weights.py cbam_cnn runs/cbam_field_pi_s0 --data "$DATA" \
  --note "Trained for other microscopes: field augmentation and per-image colour normalisation."
$PY scripts/ship_weights.py se_cnn runs/se_cnn_s0 --data "$DATA"
$PY scripts/ship_weights.py sa_cnn runs/sa_cnn_s0 --data "$DATA"
for model in cbam_cnn se_cnn; do
  .venv/bin/edgehemo export "$model" --formats onnx,onnx-int8,tflite,tflite-int8 \
    --calibration "$DATA" --calibration-count 512 --out edge/weights
done
for model in cbam_cnn cbam_cnn_lab se_cnn sa_cnn; do
  .venv/bin/edgehemo evaluate --model "$model" --data "$DATA" --split test \
    --confusion-png "docs/img/confusion_$model.png" --json "docs/results/evaluate_$model.json"
done
$PY scripts/results_table.py > docs/results/tables.md
