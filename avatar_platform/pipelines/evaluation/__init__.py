"""Evaluation: FID/KID against the dataset, and geometry error against the procedural templates."""
