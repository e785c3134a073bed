"""Inference: load a trained model (folder, training output or MLflow URI) and render from it."""
