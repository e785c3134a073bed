"""GAN training on Ray Train (tiny preset): a 2-worker run, MLflow, resume, worker failure."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import point_mlflow
from avatar_platform.models.eg3d.generator import TriPlaneGenerator
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.job import run_generate
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.job import run_train_gan


def gan_config(**overrides) -> GanTrainingConfig:
    return resolve_config(GanTrainingConfig, "gan", "tiny", overrides=overrides)


@pytest.fixture(scope="module")
def tiny_dataset(ray_session, tmp_path_factory) -> Path:
    config = resolve_config(
        GenerateConfig, "generate", "tiny", overrides={"num_images": 16, "styles": ["pixar", "anime"]}
    )
    out = tmp_path_factory.mktemp("gan-data") / "ds"
    run_generate(config, out)
    return out


pytestmark = pytest.mark.usefixtures("shared_home")  # runs and checks share one MLflow store


@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def two_worker_run(tiny_dataset, home):
    out = home / "run"
    summary = run_train_gan(gan_config(workers=2, steps=4), tiny_dataset, out)
    return summary


def _client():
    point_mlflow()
    return mlflow.MlflowClient()


def test_two_worker_run_writes_a_model_folder_that_learned(two_worker_run):
    model = two_worker_run.model
    assert two_worker_run.steps == 4
    for name in ("generator", "generator_ema", "discriminator"):
        assert (model / f"{name}.json").is_file() and (model / f"{name}.safetensors").is_file()
    assert (model / "training_state.pt").is_file() and (model / "config.json").is_file()
    state = torch.load(model / "training_state.pt", weights_only=True)
    assert state["step"] == 4
    trained = TriPlaneGenerator.from_pretrained(model)
    torch.manual_seed(gan_config().seed)
    initial = TriPlaneGenerator(gan_config().generator)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(initial.state_dict().values(), trained.state_dict().values(), strict=True)
    ]
    assert any(changed)


def test_the_mlflow_run_has_params_metrics_and_images(two_worker_run, home):
    client = _client()
    run = client.get_run(two_worker_run.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["generator.z_dim"] == "32"
    assert run.data.params["workers"] == "2"
    history = client.get_metric_history(two_worker_run.run_id, "loss_G")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    assert "images_per_second" in run.data.metrics and "seconds_per_kimg" in run.data.metrics
    fid = client.get_metric_history(two_worker_run.run_id, "fid")
    assert [m.step for m in fid] == [4] and fid[0].value > 0  # at the end of training
    # the model folder keeps it too: the registry's promotion gate reads it from there
    saved = json.loads((two_worker_run.model / "metrics.json").read_text())
    assert saved["fid"] == pytest.approx(fid[0].value) and saved["step"] == 4
    # gan.keep_best: the one FID point is the best so far, and its folder loads as a generator
    best = two_worker_run.out / "best"
    assert json.loads((best / "metrics.json").read_text())["fid"] == pytest.approx(fid[0].value)
    assert (
        TriPlaneGenerator.from_pretrained(best).config
        == TriPlaneGenerator.from_pretrained(two_worker_run.model).config
    )
    samples = {a.path for a in client.list_artifacts(two_worker_run.run_id, "samples")}
    assert "samples/step-0000002.png" in samples and "samples/step-0000004.png" in samples
    models = {a.path for a in client.list_artifacts(two_worker_run.run_id, "model")}
    assert "model/generator_ema.safetensors" in models


def test_resume_continues_a_stopped_run(two_worker_run, tiny_dataset, home):
    with pytest.raises(AvatarPlatformError, match="already holds a training run"):
        run_train_gan(gan_config(workers=2, steps=6), tiny_dataset, two_worker_run.out)
    summary = run_train_gan(gan_config(workers=2, steps=6), tiny_dataset, two_worker_run.out, resume=True)
    assert summary.steps == 6 and summary.run_id == two_worker_run.run_id
    resumed = _client().get_metric_history(summary.run_id, "resumed_from_step")
    assert [m.value for m in resumed] == [4.0]


def test_a_killed_worker_resumes_from_its_checkpoint(tiny_dataset, home):
    import psutil
    import ray

    out = home / "killed"
    config = gan_config(workers=2, steps=40, checkpoint_every=4, sample_every=1000)
    result: dict = {}

    def train_workers() -> set[int]:
        # Ray titles each actor process "ray::<class>..."; the state API would need the dashboard
        return {
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if any("RayTrainWorker" in part for part in p.info["cmdline"] or [])
        }

    earlier = train_workers()  # a previous test's workers may still be shutting down
    thread = threading.Thread(target=lambda: result.update(summary=run_train_gan(config, tiny_dataset, out)))
    thread.start()
    deadline = time.monotonic() + 240

    # a checkpoint counts once the next one is being written (the first is registered by then)
    # kill only once the controller has registered a checkpoint (its snapshot lists it): a
    # checkpoint folder on disk may not be registered yet, and a restart would begin at step 0
    def registered() -> int:
        snapshot = out / "ray" / "train" / "checkpoint_manager_snapshot.json"
        try:
            return len(json.loads(snapshot.read_text())["checkpoint_results"])
        except (OSError, ValueError, KeyError):
            return 0

    while time.monotonic() < deadline and registered() < 1:
        time.sleep(0.1)
    workers = sorted(train_workers() - earlier)
    assert workers, "no training worker to kill"
    os.kill(workers[0], signal.SIGKILL)
    thread.join(timeout=400)
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.steps == 40
    assert torch.load(summary.model / "training_state.pt", weights_only=True)["step"] == 40
    resumed = _client().get_metric_history(summary.run_id, "resumed_from_step")
    assert len(resumed) == 1 and 4 <= resumed[0].value < 40
    # the restart did not repeat the steps before its checkpoint
    steps = [m.step for m in _client().get_metric_history(summary.run_id, "loss_G")]
    assert steps.count(1) == 1
    assert ray.is_initialized()


def test_more_workers_than_the_cluster_holds(tiny_dataset, tmp_path):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    with pytest.raises(AvatarPlatformError, match=f"{cpus + 1} workers need"):
        run_train_gan(
            gan_config(workers=cpus + 1, batch_size=cpus + 1), tiny_dataset, tmp_path / "run", track=False
        )


def test_init_fine_tunes_a_parent_on_two_workers(two_worker_run, tiny_dataset, home):
    from safetensors.torch import load_file

    parent = two_worker_run.model
    summary = run_train_gan(gan_config(workers=2, steps=1), tiny_dataset, home / "child", init=parent)
    saved = json.loads((summary.model / "config.json").read_text())
    assert saved["parent"] == str(parent) and saved["step"] == 1
    assert _client().get_run(summary.run_id).data.params["init"] == str(parent)

    def distance(a, b):
        a, b = (
            load_file(str(a / "generator_ema.safetensors")),
            load_file(str(b / "generator_ema.safetensors")),
        )
        return sum(float((a[k] - b[k]).abs().mean()) for k in a) / len(a)

    fresh = home / "fresh"
    run_train_gan(gan_config(workers=2, steps=1, seed=5), tiny_dataset, fresh, track=False)
    # one step from the parent's weights stays next to them; a fresh start is far away
    assert distance(summary.model, parent) < 0.2 * distance(fresh / "model", parent)
