"""Shared fixtures: one local Ray per test session, an isolated platform home, tiny SD models."""

from __future__ import annotations

import os

import pytest

# no hub look-ups and no usage reporting, ever, in tests
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own platform home (datasets, MLflow store)."""
    monkeypatch.setenv("AVATAR_HOME", str(tmp_path / "avatar-home"))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session: starting Ray costs ~6 s. More logical CPUs than
    cores, so that an actor pool never starves the read and write tasks. Yields its address."""
    import ray

    from avatar_platform.core.ray_runtime import init_ray

    init_ray(min_cpus=6)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> dict[str, str]:
    """Tiny random-weight SD 1.5 + OpenPose/depth ControlNets saved to a local folder."""
    from avatar_platform.pipelines.datagen.tiny_models import build_tiny_stable_diffusion

    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))
