"""Self-contained MLflow "models from code" files: copied into the model directory when saved, never imported."""
