"""MLflow plumbing: the tracking URI (SQLite under the platform home unless `MLFLOW_TRACKING_URI`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from avatar_platform.core.errors import caused_by_interrupt
from avatar_platform.core.paths import platform_home

# mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; the value this process exported itself is
# not the user's choice, so it must not outrank a later AVATAR_HOME
_exported: str | None = None


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` when the user set it, else a SQLite store under the platform home."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri != _exported:
        return uri
    home = platform_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def artifact_root() -> Path:
    """Where a local store keeps artifacts (beside its SQLite file)."""
    return platform_home() / "mlartifacts"


def point_mlflow() -> str:
    """Point the mlflow module at `tracking_uri()`; returns that URI."""
    global _exported
    import mlflow

    uri = tracking_uri()
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before != uri:
        _exported = os.environ.get("MLFLOW_TRACKING_URI")
    return uri


def configure_mlflow(experiment: str):
    """Point MLflow at the platform's store and select `experiment`; returns the mlflow module."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = point_mlflow()
    if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(experiment) is None:
        # a SQLite store would otherwise put artifacts in ./mlruns of the working directory
        mlflow.create_experiment(experiment, artifact_location=artifact_root().as_uri())
    mlflow.set_experiment(experiment)
    return mlflow


def _client():
    import mlflow

    point_mlflow()
    return mlflow.MlflowClient()


def reopen_run(run_id: str) -> str:
    """Mark an ended run (a stopped or failed one that `--resume` continues) RUNNING again."""
    _client().update_run(run_id, status="RUNNING")
    return run_id


@contextmanager
def ended_on_error(run_id: str | None) -> Iterator[None]:
    """An MLflow run that the block finishes (the block ends it FINISHED itself) is ended
    KILLED on Ctrl-C and FAILED on any other error, so that no run stays RUNNING forever."""
    try:
        yield
    except BaseException as err:
        if run_id:
            status = "KILLED" if caused_by_interrupt(err) else "FAILED"
            # the store being down must not hide the error itself
            with suppress(Exception):
                _client().set_terminated(run_id, status)
        raise


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
