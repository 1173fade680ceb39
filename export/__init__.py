"""Export stage: checkpoints to ONNX (fp32, int8) artifacts with manifests (needs torch, onnx)."""
