"""Training stage: model zoo, data pipeline, training loop, evaluation (needs torch)."""
