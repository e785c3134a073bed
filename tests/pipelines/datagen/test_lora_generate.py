"""`generate --backend controlnet --lora` on tiny random-weight models: the adapter steers the
images, its token replaces the style text, and the dataset card names the adapter and its hash."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.datagen.backend import ImageRequest
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.controlnet_backend import ControlNetBackend, ControlNetBackendConfig
from avatar_platform.pipelines.datagen.job import config_hash
from avatar_platform.pipelines.datagen.spec import plan
from avatar_platform.pipelines.datagen.tiny_models import write_tiny_pictures
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.poses.conditioning import render_conditions
from avatar_platform.pipelines.poses.template import bust_for_seed
from avatar_platform.pipelines.prompts.prompts import style_catalog
from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import load_training_images
from avatar_platform.pipelines.training.lora.trainer import LoraTrainer

TOKEN = "zorb"


@pytest.fixture(scope="module")
def lora_run(tiny_sd, tmp_path_factory):
    """A `train lora` output folder (run/model/...) of the tiny base, its adapter made strong so
    that its effect shows in 8-bit images."""
    root = tmp_path_factory.mktemp("lora")
    config = resolve_config(
        LoraTrainingConfig, "lora", "tiny", overrides={"base": tiny_sd["sd_model"], "token": TOKEN}
    )
    pictures = write_tiny_pictures(root / "pictures", count=3)
    trainer = LoraTrainer(config, load_training_images(pictures, TOKEN, config.resolution))
    trainer.train_step()
    with torch.no_grad():
        for param in trainer.params:
            param.add_(torch.randn_like(param) * 0.3)
    trainer.save(root / "run" / "model")
    return root / "run"


def _generate_config(tiny_sd, **controlnet) -> GenerateConfig:
    overrides = {
        "backend": "controlnet",
        "num_images": 8,
        "styles": ["pixar", "anime"],
        "controlnet": {**tiny_sd, **controlnet},
    }
    return resolve_config(GenerateConfig, "generate", "tiny", overrides=overrides)


def test_the_token_replaces_the_style_text_in_the_plan(tiny_sd, lora_run, tmp_path):
    spec = plan(_generate_config(tiny_sd, lora=str(lora_run / "model")))
    assert set(spec["style"].to_pylist()) == {TOKEN}
    styles = [style.prompt for style in style_catalog().values()]
    for prompt in spec["prompt"].to_pylist():
        assert prompt.startswith(f"{TOKEN}, ") and not any(text in prompt for text in styles)
    # a LoRA from elsewhere (no lora.json) names no token: the style text stays
    weights = tmp_path / "other.safetensors"
    shutil.copy(lora_run / "model" / "pytorch_lora_weights.safetensors", weights)
    spec = plan(_generate_config(tiny_sd, lora=str(weights)))
    assert set(spec["style"].to_pylist()) == {"pixar", "anime"}


def test_a_retrained_adapter_in_the_same_folder_makes_another_dataset(tiny_sd, lora_run, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(lora_run / "model", tmp_path / "model")
    config = _generate_config(tiny_sd, lora=str(folder))
    before = config_hash(config)
    weights = folder / "pytorch_lora_weights.safetensors"
    save_file({name: tensor + 1 for name, tensor in load_file(weights).items()}, weights)
    assert config_hash(config) != before  # its default --out and resume check tell them apart


def test_the_adapter_and_its_scale_steer_the_images(tiny_sd, lora_run):
    cond = render_conditions(bust_for_seed(0), camera_from_angles(0.0, 0.0, CameraConfig()), 32)
    request = [
        ImageRequest(
            prompt=f"{TOKEN}, front view",
            negative_prompt="",
            seed=7,
            openpose=cond.openpose,
            depth=cond.depth,
            style=TOKEN,
            avatar_seed=0,
            render_yaw=0.0,
            render_pitch=0.0,
        )
    ]
    settings = {**tiny_sd, "steps": 2, "guidance": "hybrid", "dtype": "float32"}
    plain = ControlNetBackend(ControlNetBackendConfig(**settings)).generate(request, 32)[0]
    lora = str(lora_run / "model")
    images = {
        scale: ControlNetBackend(ControlNetBackendConfig(**settings, lora=lora, lora_scale=scale)).generate(
            request, 32
        )[0]
        for scale in (0.0, 1.0)
    }
    assert np.abs(images[1.0].astype(int) - plain).max() > 8
    assert np.abs(images[0.0].astype(int) - plain).max() <= 1  # scale 0 = no adapter


def test_generate_with_lora_writes_a_card_that_names_the_adapter(
    ray_session, cli, tiny_sd_flags, lora_run, tmp_path
):
    out = tmp_path / "ds"
    code, _, err = cli(
        "generate --backend controlnet --preset tiny --num-images 4",
        tiny_sd_flags,
        "--guidance hybrid --lora",
        lora_run,
        "--lora-scale 0.8 --out",
        out,
        "--no-track --no-preview",
    )
    assert code == 0, err
    card = json.loads((out / "dataset.json").read_text())
    weights = lora_run / "model" / "pytorch_lora_weights.safetensors"
    assert card["backend"]["lora"] == {
        "path": str(lora_run / "model"),  # the run folder stands for its model/
        "weights": str(weights),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "scale": 0.8,
        "token": TOKEN,
    }
    assert card["config"]["controlnet"]["lora_scale"] == 0.8
    assert card["counts"]["style"] == {TOKEN: 4}
    rows = pq.read_table(out / card["shards"][0]["file"], columns=["prompt"]).to_pylist()
    assert all(row["prompt"].startswith(f"{TOKEN}, ") for row in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lora", "/nowhere/lora"], "the LoRA weights '/nowhere/lora' does not exist"),
        (["--backend", "procedural", "--lora", "LORA"], "add --backend controlnet"),
        (["--lora", "NOT_LORA"], "cannot load the LoRA weights"),
    ],
)
def test_generate_with_a_bad_lora_is_one_clear_error(
    ray_session, cli, tiny_sd_flags, lora_run, tmp_path, args, message
):
    not_lora = tmp_path / "not-lora"
    not_lora.mkdir()
    (not_lora / "pytorch_lora_weights.safetensors").write_bytes(b"\x00" * 32)
    args = [str(lora_run) if a == "LORA" else str(not_lora) if a == "NOT_LORA" else a for a in args]
    code, _, err = cli(
        "generate --backend controlnet --preset tiny --num-images 4",
        tiny_sd_flags,
        "--out",
        tmp_path / "ds",
        "--no-track --no-preview",
        args,
    )
    assert code == 2 and message in err, err
