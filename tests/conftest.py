"""Shared fixtures: one local Ray per test session, an isolated platform home, tiny SD models."""

from __future__ import annotations

import os
import tempfile

import pytest

# no hub look-ups and no usage reporting, ever, in tests
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
# a home for whatever runs outside a test's own (module fixtures): never the checkout's .avatar/
os.environ["AVATAR_HOME"] = tempfile.mkdtemp(prefix="avatar-test-home-")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own platform home (datasets, MLflow store)."""
    monkeypatch.setenv("AVATAR_HOME", str(tmp_path / "avatar-home"))


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """One platform home for a whole test module, where tests share an MLflow store (creating
    one costs seconds). Module fixtures run before the per-test home, hence os.environ here."""
    home = tmp_path_factory.mktemp("module-home")
    os.environ["AVATAR_HOME"] = str(home)
    return home


@pytest.fixture
def shared_home(_isolated_home, module_home, monkeypatch):
    """Use with `pytestmark = pytest.mark.usefixtures("shared_home")` in such a module."""
    monkeypatch.setenv("AVATAR_HOME", str(module_home))
    return module_home


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


@pytest.fixture(scope="session")
def tiny_sd_flags(tiny_sd) -> list[str]:
    """`generate --backend controlnet`'s model flags for the tiny SD pipeline and ControlNets."""
    names = ("sd_model", "openpose_controlnet", "depth_controlnet")
    return [item for name in names for item in (f"--{name.replace('_', '-')}", tiny_sd[name])]


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory):
    """A `tiny`-preset generator model folder (random weights) with a recorded FID."""
    import json

    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.models.eg3d.generator import TriPlaneGenerator
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    folder = tmp_path_factory.mktemp("tiny-generator")
    torch.manual_seed(0)
    generator = TriPlaneGenerator(resolve_config(GanTrainingConfig, "gan", "tiny").generator)
    generator.save_pretrained(folder, "generator_ema")
    (folder / "metrics.json").write_text(json.dumps({"fid": 123.5}))
    return folder


@pytest.fixture(scope="session")
def tiny_diffusion(tiny_generator, tmp_path_factory):
    """A `train diffusion` model folder (tiny preset, a few steps; no Ray) embedding
    `tiny_generator`."""
    from avatar_platform.core.config import resolve_config
    from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
    from avatar_platform.pipelines.training.diffusion.trainer import DiffusionTrainer

    trainer = DiffusionTrainer(resolve_config(DiffusionTrainingConfig, "diffusion", "tiny"), tiny_generator)
    for _ in range(3):
        trainer.train_step()
    folder = tmp_path_factory.mktemp("tiny-diffusion")
    trainer.save(folder, {"eval/w_error": 1.0})
    return folder


@pytest.fixture(scope="session")
def cli():
    """Run `avatar-platform` in this process: `cli("train gan --preset tiny --out", out)` gives
    (exit code, stdout, stderr). A string is split as a shell would split it (shlex), a list or
    tuple is taken as arguments already split, anything else (a Path, a number) is one argument.
    Session-scoped (it captures with redirect_stdout, not capsys): module fixtures use it too."""
    import contextlib
    import io
    import shlex

    from avatar_platform.cli.app import main

    def run(*parts) -> tuple[int, str, str]:
        argv: list[str] = []
        for part in parts:
            if isinstance(part, str):
                argv += shlex.split(part)
            else:
                argv += [str(item) for item in part] if isinstance(part, list | tuple) else [str(part)]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        return code, out.getvalue(), err.getvalue()

    return run
