# The README's first two commands. Both create the virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLES := edge/samples/pbc
CLIP := edge/samples/clip/bccd_demo.avi
DEMO_STATE := demo-results

.PHONY: demo test lint clean tflite-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

## Main job on a bundled default: the capture daemon runs the shipped int8 CBAM-CNN (onnxruntime,
## no torch) over the bundled smear clip and prints the session's differential count; then the same
## model scores itself on the bundled labelled PBC cells.
demo: $(VENV)/.installed-device,onnx
	$(BIN)/edgehemo capture --model cbam_cnn_int8 --source $(CLIP) --state-dir $(DEMO_STATE) --sample-id demo
	$(BIN)/edgehemo evaluate --model cbam_cnn_int8 --data $(SAMPLES)

## Lint and run the test suite.
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

## The TFLite converter's own environment (onnx2tf + TensorFlow, ~2.6 GB), used by `edgehemo export`.
tflite-env: .venv-tflite/bin/onnx2tf

.venv-tflite/bin/onnx2tf: export/tflite-requirements.txt
	$(PYTHON) -m venv .venv-tflite
	.venv-tflite/bin/python -m pip install --quiet -r export/tflite-requirements.txt
	touch $@

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
