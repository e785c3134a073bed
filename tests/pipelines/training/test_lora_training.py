"""A character LoRA on tiny random-weight SD components: the loss falls, only the adapter
changes, the saved adapter loads into a fresh pipeline through diffusers, resume, and a Ray Train
run through the CLI with its MLflow record."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch

from avatar_platform.cli.app import main
from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import point_mlflow
from avatar_platform.pipelines.datagen.tiny_models import write_tiny_pictures
from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import load_training_images
from avatar_platform.pipelines.training.lora.trainer import (
    LoraTrainer,
    load_base_pipeline,
    text_encoder_adapter_problem,
)

pytestmark = pytest.mark.usefixtures("shared_home")  # runs and checks share one MLflow store
TOKEN = "zorb"


def lora_config(tiny_sd, **overrides) -> LoraTrainingConfig:
    overrides = {"base": tiny_sd["sd_model"], "token": TOKEN, **overrides}
    return resolve_config(LoraTrainingConfig, "lora", "tiny", overrides=overrides)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return write_tiny_pictures(tmp_path_factory.mktemp("pictures"), count=4)


def _base_state(trainer: LoraTrainer) -> dict[str, torch.Tensor]:
    """Every frozen weight of the pipeline, named as in the base model (peft's wrappers add
    `.base_layer`), copied."""
    state = {}
    for prefix, module in (("unet", trainer.unet), ("vae", trainer.vae), ("text", trainer.text_encoder)):
        for name, tensor in module.state_dict().items():
            if "lora_" not in name:
                state[f"{prefix}.{name.replace('.base_layer', '')}"] = tensor.clone()
    return state


@pytest.fixture(scope="module")
def trained(tiny_sd, pictures, module_home):
    """A trainer after 12 steps (alpha ≠ rank, so that the scale must survive saving), with the
    loss of one fixed batch and the frozen weights before and after."""
    config = lora_config(tiny_sd, alpha=8.0)
    trainer = LoraTrainer(config, load_training_images(pictures, TOKEN, config.resolution))
    # a fixed batch (latents, captions, noise, timesteps) measures the loss without sampling noise
    rng = torch.Generator().manual_seed(5)
    latents = trainer.encode(trainer.pixels).repeat(4, 1, 1, 1)
    states = trainer.text_states(torch.arange(4)).repeat(4, 1, 1)
    noise = torch.randn(latents.shape, generator=rng)
    t = torch.randint(0, 1000, (16,), generator=rng)

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(trainer.denoising_loss(latents, states, noise, t))

    base_before, loss_before = _base_state(trainer), fixed_loss()
    adapter_before = {k: v.clone() for k, v in trainer.adapter_state()["unet"].items()}
    for _ in range(12):
        trainer.train_step()
    return {
        "trainer": trainer,
        "loss": (loss_before, fixed_loss()),
        "base": base_before,
        "adapter_before": adapter_before,
        "folder": module_home / "adapter",
    }


def test_training_lowers_the_loss_and_changes_only_the_adapter(trained):
    before, after = trained["loss"]
    assert after < 0.97 * before  # ≈ 0.95 here: 12 steps of a rank-4 adapter
    trainer = trained["trainer"]
    base_after = _base_state(trainer)
    assert base_after.keys() == trained["base"].keys()
    for name, tensor in trained["base"].items():
        assert torch.equal(tensor, base_after[name]), f"{name} changed"
    adapter = trainer.adapter_state()["unet"]
    changed = [k for k, v in adapter.items() if not torch.equal(v, trained["adapter_before"][k])]
    # lora_A and lora_B × q, k, v, out × 2 attentions × 4 transformer blocks of the tiny UNet
    assert len(changed) == len(adapter) == 2 * 4 * 2 * 4
    assert all(p.dtype == torch.float32 for p in trainer.params)


def _render(pipe) -> np.ndarray:
    return pipe(
        f"a picture of {TOKEN}",
        num_inference_steps=2,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]


@pytest.fixture(scope="module")
def saved(trained):
    trained["trainer"].save(trained["folder"], grid=trained["trainer"].sample_grid())
    return trained["folder"]


def test_the_saved_adapter_loads_into_a_fresh_pipeline_and_changes_its_output(trained, saved, tiny_sd):
    assert (saved / "samples.png").is_file()
    meta = json.loads((saved / "lora.json").read_text())
    assert meta["token"] == TOKEN and meta["step"] == 12 and meta["rank"] == 4
    assert meta["format_version"] == 1 and meta["base"] == tiny_sd["sd_model"]
    assert meta["captions"]["picture-00.png"] == f"a picture of {TOKEN}"
    pipe = load_base_pipeline(tiny_sd["sd_model"])
    pipe.set_progress_bar_config(disable=True)
    without = _render(pipe)
    pipe.load_lora_weights(saved, adapter_name="character")
    assert pipe.unet.peft_config["character"].lora_alpha == 8.0  # the metadata kept the scale
    with_adapter = _render(pipe)
    assert np.abs(with_adapter - without).max() > 1e-3
    # the same image as the trainer's own pipeline: the file holds exactly what was trained
    np.testing.assert_allclose(with_adapter, _render(trained["trainer"].pipe), atol=1e-5)


def test_resume_restores_the_adapter_optimiser_and_step(trained, saved, tiny_sd, pictures):
    config = trained["trainer"].config
    fresh = LoraTrainer(config, load_training_images(pictures, TOKEN, config.resolution))
    fresh.load(saved)
    assert fresh.step == 12
    for name, tensor in trained["trainer"].adapter_state()["unet"].items():
        assert torch.equal(fresh.adapter_state()["unet"][name], tensor)
    torch.testing.assert_close(fresh.rng.get_state(), trained["trainer"].rng.get_state())
    moments = [state["exp_avg"] for state in trained["trainer"].opt.state_dict()["state"].values()]
    loaded = [state["exp_avg"] for state in fresh.opt.state_dict()["state"].values()]
    assert len(loaded) == len(moments) == 64
    assert all(torch.equal(a, b) for a, b in zip(loaded, moments, strict=True))


def test_the_text_encoder_adapter_is_trained_or_refused_clearly(tiny_sd, pictures):
    config = lora_config(tiny_sd, train_text_encoder=True, steps=1)
    images = load_training_images(pictures, TOKEN, config.resolution)
    problem = text_encoder_adapter_problem()
    if problem:  # transformers 5 needs a newer peft than some environments have
        with pytest.raises(AvatarPlatformError, match="needs peft >= "):
            LoraTrainer(config, images)
        return
    trainer = LoraTrainer(config, images)
    trainer.train_step()
    assert trainer.adapter_state()["text_encoder"]


# -- the Ray Train job through the CLI -------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(ray_session, tiny_sd, pictures, module_home):
    """`train lora --preset tiny` (4 steps, samples at 2 and 4) on Ray Train."""
    out = module_home / "lora-run"
    code = main(
        [
            "train",
            "lora",
            "--images",
            str(pictures),
            "--token",
            TOKEN,
            "--base",
            tiny_sd["sd_model"],
            "--preset",
            "tiny",
            "--out",
            str(out),
        ]
    )
    return code, out


def test_train_lora_writes_the_adapter_and_an_mlflow_run(cli_run, capsys):
    code, out = cli_run
    assert code == 0
    model = out / "model"
    for name in ("pytorch_lora_weights.safetensors", "lora.json", "samples.png", "metrics.json"):
        assert (model / name).is_file(), name
    assert json.loads((model / "lora.json").read_text())["step"] == 4
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    point_mlflow()
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.experiment_id == mlflow.get_experiment_by_name("train-lora").experiment_id
    assert run.data.params["token"] == TOKEN and run.data.params["num_images"] == "4"
    losses = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4]
    samples = {a.path for a in client.list_artifacts(run_id, "samples")}
    assert samples == {"samples/step-0000002.png", "samples/step-0000004.png"}
    models = {a.path for a in client.list_artifacts(run_id, "model")}
    assert "model/pytorch_lora_weights.safetensors" in models


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("few", [], "holds 2 picture(s)"),
        ("ok", ["--base", "/nowhere/sd"], "Stable Diffusion model '/nowhere/sd' does not exist"),
        ("ok", ["--resolution", "20"], "multiple of 8"),
        ("ok", ["--token", ""], "'lora.token'"),
    ],
)
def test_train_lora_bad_input_fails_before_anything_is_written(cli, tmp_path, tiny_sd, setup, args, message):
    pictures = write_tiny_pictures(tmp_path / "pictures", count=2 if setup == "few" else 3)
    out = tmp_path / "run"
    code, _, err = cli(
        "train lora --images",
        pictures,
        "--token",
        TOKEN,
        "--base",
        tiny_sd["sd_model"],
        "--preset tiny --out",
        out,
        "--no-track",
        args,
    )
    assert code == 2 and message in err, err
    assert not out.exists()


def test_train_lora_dry_run(cli, tmp_path):
    code, out, _ = cli("train lora --images", tmp_path, "--token", TOKEN, "--preset paper --rank 8 --dry-run")
    resolved = json.loads(out)["lora"]
    assert code == 0 and resolved["rank"] == 8 and resolved["resolution"] == 512
    assert resolved["token"] == TOKEN and resolved["mixed_precision"] == "auto"
