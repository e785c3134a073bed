"""The floor of the platform: configs and presets, paths, errors, Ray runtime, MLflow plumbing, progress.

Nothing here imports a stage (pipelines, models, serve, cluster, cli).
"""
