"""The style diffusion's training (tiny preset): the loss falls, a 2-worker Ray Train run writes
a self-contained model folder and an MLflow record, resume, and bad generators."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import point_mlflow
from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
from avatar_platform.pipelines.training.diffusion.job import run_train_diffusion
from avatar_platform.pipelines.training.diffusion.trainer import DiffusionTrainer


def diffusion_config(**overrides) -> DiffusionTrainingConfig:
    return resolve_config(DiffusionTrainingConfig, "diffusion", "tiny", overrides=overrides)


def test_training_lowers_the_loss(tiny_generator):
    trainer = DiffusionTrainer(diffusion_config(lr=1e-3), tiny_generator)
    # a fixed batch (pairs, noise, timesteps) measures the loss without sampling noise
    rng = torch.Generator().manual_seed(5)
    w, images = trainer.pairs(64, rng)
    noise = torch.randn(w.shape, generator=rng)
    t = torch.randint(0, 100, (64,), generator=rng)

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(trainer.denoising_loss(w, images, noise, t))

    before = fixed_loss()
    for _ in range(60):
        trainer.train_step()
    assert fixed_loss() < 0.85 * before  # ≈ 0.76 here: most of what a tiny model can learn


def test_held_out_pairs_are_fixed_and_unlike_training_pairs(tiny_generator):
    trainer = DiffusionTrainer(diffusion_config(), tiny_generator)
    w1, images1 = trainer.held_out()
    w2, _ = trainer.held_out()
    torch.testing.assert_close(w1, w2)
    assert images1.shape == (4, 3, 32, 32) and images1.min() >= -1 and images1.max() <= 1
    w_train, _ = trainer.pairs(4, trainer.rng)
    assert torch.cdist(w1, w_train).min() > 1e-3


pytestmark = pytest.mark.usefixtures("shared_home")  # runs and checks share one MLflow store


@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def two_worker_run(ray_session, tiny_generator, home):
    return run_train_diffusion(
        diffusion_config(workers=2, batch_size=8, steps=6), tiny_generator, home / "run"
    )


def _client():
    point_mlflow()
    return mlflow.MlflowClient()


def test_the_model_folder_is_self_contained(two_worker_run, tiny_generator):
    model = two_worker_run.model
    assert two_worker_run.steps == 6
    for name in ("style_denoiser", "image_encoder"):
        assert (model / f"{name}.json").is_file() and (model / f"{name}.safetensors").is_file()
    embedded = model / "generator"
    assert (embedded / "generator_ema.safetensors").read_bytes() == (
        tiny_generator / "generator_ema.safetensors"
    ).read_bytes()
    meta = json.loads((model / "diffusion.json").read_text())
    assert meta["kind"] == "styleavatar3d-diffusion" and meta["step"] == 6
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["fid"] == 123.5  # the generator's FID travels for the registry's gate
    for key in ("eval/w_error", "eval/image_l1", "eval/w_error_mean_baseline"):
        assert np.isfinite(metrics[key])
    grid = np.asarray(Image.open(model / "eval.png"))
    assert grid.shape == (4 * 32, 5 * 32, 3)  # held-out inputs | avatar front, left, back, right


def test_the_mlflow_run_has_the_config_losses_evaluation_and_model(two_worker_run):
    client = _client()
    run = client.get_run(two_worker_run.run_id)
    assert run.data.params["encoder.kind"] == "cnn"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(1, 7))
    assert "eval_w_error" in run.data.metrics and "eval_image_l1_mean_baseline" in run.data.metrics
    images = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert "eval/step-0000006.png" in images
    models = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/style_denoiser.safetensors" in models and "model/generator" in models


def test_resume_continues_the_run(two_worker_run, tiny_generator, home):
    config = diffusion_config(workers=2, batch_size=8, steps=8)
    with pytest.raises(AvatarPlatformError, match="already holds a training run"):
        run_train_diffusion(config, tiny_generator, two_worker_run.out)
    summary = run_train_diffusion(config, tiny_generator, two_worker_run.out, resume=True)
    assert summary.steps == 8 and summary.run_id == two_worker_run.run_id
    resumed = _client().get_metric_history(summary.run_id, "resumed_from_step")
    assert [m.value for m in resumed] == [6.0]


def test_a_generator_that_is_not_one_is_refused_before_ray_starts(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(AvatarPlatformError, match="is not a model"):
        run_train_diffusion(diffusion_config(), tmp_path / "junk", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "generator_ema.json").write_text('{"format_version": 1}')
    (broken / "generator_ema.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(AvatarPlatformError):
        run_train_diffusion(diffusion_config(), broken, tmp_path / "out2")


def test_a_pair_pool_serves_batches_and_refreshes(tiny_generator):
    trainer = DiffusionTrainer(diffusion_config(pair_pool=16, pool_refresh=4), tiny_generator)
    w, images = trainer.training_pairs(8)
    assert w.shape == (8, 32) and images.shape == (8, 3, 32, 32)
    pool_w = trainer.pool[0].clone()
    for row in w:  # batches come from the pool
        assert (pool_w - row).abs().sum(dim=1).min() < 1e-6
    trainer.training_pairs(8)
    changed = (trainer.pool[0] - pool_w).abs().sum(dim=1) > 0
    assert 1 <= int(changed.sum()) <= 4  # the pool was refreshed, not replaced


def test_sample_takes_the_training_run_uri(two_worker_run, tmp_path, capsys):
    from avatar_platform.cli.app import main

    picture = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (180, 140, 100)).save(picture)
    out = tmp_path / "samples"
    code = main(
        [
            "sample",
            "--model",
            f"runs:/{two_worker_run.run_id}",
            "--image",
            str(picture),
            "--seeds",
            "0",
            "--num-samples",
            "2",
            "--views",
            "2",
            "--no-turntable",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    # rows: the seed (from the embedded generator), then the picture's two samples
    assert np.asarray(Image.open(out / "views.png")).shape == (3 * 32, 2 * 32, 3)
