"""MLflow plumbing: the tracking URI (SQLite under the platform home unless `MLFLOW_TRACKING_URI`)."""

from __future__ import annotations

import os
from pathlib import Path

from avatar_platform.core.paths import platform_home


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when set, else a SQLite store under the platform home."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = platform_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def artifact_root() -> Path:
    """Where a local store keeps artifacts (beside its SQLite file)."""
    return platform_home() / "mlartifacts"


def configure_mlflow(experiment: str):
    """Point MLflow at the platform's store and select `experiment`; returns the mlflow module."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(experiment) is None:
        # a SQLite store would otherwise put artifacts in ./mlruns of the working directory
        mlflow.create_experiment(experiment, artifact_location=artifact_root().as_uri())
    mlflow.set_experiment(experiment)
    return mlflow


def flatten_params(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config → MLflow params (`camera.radius` → '2.7'), values cut to MLflow's limit."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, f"{name}."))
        else:
            out[name] = str(value)[:500]
    return out
