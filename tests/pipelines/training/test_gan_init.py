"""`train gan --init`: a GAN starts from a parent's weights, exactly, with a fresh optimiser; a
parent that cannot be one is refused before any training starts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.init import check_init, load_init
from avatar_platform.pipelines.training.gan.trainer import GanTrainer

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")


@pytest.fixture(scope="module")
def parent(tmp_path_factory, gan_batch):
    """A tiny GAN trained for 2 steps (so that its weights differ from a fresh one's)."""
    trainer = GanTrainer(TINY.model_copy(update={"seed": 7}))
    for _ in range(2):
        trainer.train_step(gan_batch())
    folder = tmp_path_factory.mktemp("parent")
    trainer.save(folder)
    return folder


def _render(generator) -> torch.Tensor:
    cams = torch.tensor(np.stack([camera_from_angles(0.0, 0.0, CameraConfig())] * 2)).float()
    z = torch.randn(2, TINY.generator.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return generator(z, cams)["image"]


def test_init_copies_the_parents_weights_exactly_with_a_fresh_optimiser(parent, gan_batch):
    child = GanTrainer(TINY)  # seed 0: other initial weights than the parent's
    reference = GanTrainer(TINY.model_copy(update={"seed": 7}))
    reference.load(parent)
    assert not torch.equal(_render(child.G_ema), _render(reference.G_ema))
    load_init(child, check_init(parent, TINY), "the-parent")
    for name in ("G", "G_ema", "D"):
        for a, b in zip(
            getattr(child, name).state_dict().values(),
            getattr(reference, name).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b), name
    assert torch.equal(_render(child.G_ema), _render(reference.G_ema))
    assert child.step == 0 and not child.opt_g.state and not child.opt_d.state
    # the first step starts from the parent's outputs and trains on
    child.train_step(gan_batch())
    assert child.step == 1 and child.opt_g.state


def test_the_parent_is_recorded_in_the_model_folder(parent, tmp_path):
    child = GanTrainer(TINY)
    load_init(child, parent, "models:/gan@champion")
    child.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["parent"] == "models:/gan@champion"
    again = GanTrainer(TINY)
    again.load(tmp_path)
    assert again.parent == "models:/gan@champion"


def test_a_fine_tune_does_not_blur_d_again_even_after_a_resume(parent, tmp_path, gan_batch):
    # the blur steadies a GAN learning from nothing; restarted in a fine-tune it undid the parent
    config = TINY.model_copy(update={"blur_sigma": 10.0, "blur_fade_kimg": 100.0})
    assert GanTrainer(config).train_step(gan_batch())["blur_sigma"] == pytest.approx(10.0, rel=0.01)
    child = GanTrainer(config)
    load_init(child, parent, "the-parent")
    assert child.train_step(gan_batch())["blur_sigma"] == 0.0
    child.save(tmp_path)
    resumed = GanTrainer(config)
    resumed.load(tmp_path)
    assert resumed.train_step(gan_batch())["blur_sigma"] == 0.0


def test_a_fine_tune_runs_at_the_scaled_learning_rates_also_after_a_resume(parent, tmp_path, gan_batch):
    config = TINY.model_copy(update={"finetune_lr_scale": 0.25})
    child = GanTrainer(config)
    load_init(child, parent, "the-parent")
    child.train_step(gan_batch())

    def rates(t):
        return [g["lr"] for g in t.opt_g.param_groups], [g["lr"] for g in t.opt_d.param_groups]

    assert rates(child) == ([config.lr_g * 0.25], [config.lr_d * 0.25])
    child.save(tmp_path)
    resumed = GanTrainer(config)
    resumed.load(tmp_path)
    assert rates(resumed) == rates(child)
    assert rates(GanTrainer(config)) == ([config.lr_g], [config.lr_d])  # from nothing: the preset's


def test_another_architecture_is_refused_naming_the_fields(parent):
    data = TINY.model_dump()
    data["generator"]["triplane_channels"] = 4
    data["discriminator"]["mask_channel"] = True
    other = GanTrainingConfig.model_validate(data)
    with pytest.raises(AvatarPlatformError) as err:
        check_init(parent, other)
    message = str(err.value)
    assert "generator.triplane_channels: parent 8, this run 4" in message
    assert "discriminator.mask_channel: parent False, this run True" in message
    coarse = TINY.discriminator.conditioning.model_copy(update={"mode": "coarse"})
    relabelled = TINY.model_copy(
        update={"discriminator": TINY.discriminator.model_copy(update={"conditioning": coarse})}
    )
    with pytest.raises(AvatarPlatformError, match="label size"):
        check_init(parent, relabelled)


def test_bad_parents_are_one_clear_error_each(parent, tmp_path):
    with pytest.raises(AvatarPlatformError, match="does not exist"):
        check_init(tmp_path / "nowhere", TINY)
    diffusion = tmp_path / "diffusion"
    diffusion.mkdir()
    (diffusion / "style_denoiser.json").write_text("{}")
    with pytest.raises(AvatarPlatformError, match="is a style diffusion model, not a GAN"):
        check_init(diffusion, TINY)
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("generator", "generator_ema"):
        for ext in ("json", "safetensors"):
            (partial / f"{name}.{ext}").write_bytes((parent / f"{name}.{ext}").read_bytes())
    with pytest.raises(AvatarPlatformError, match=r"lacks discriminator\.json"):
        check_init(partial, TINY)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in parent.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    weights = damaged / "discriminator.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AvatarPlatformError, match="cannot read the weights"):
        check_init(damaged, TINY)


def _dataset_card_only(folder):
    """A dataset that passes the card and schema checks (its rows are never read here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    columns = ("image", "yaw", "pitch", "camera", "width", "height", "view_bin")
    pq.write_table(pa.table({c: [0] * 8 for c in columns}), folder / "data" / "part-0.parquet")
    card = {
        "resolution": 32,
        "num_images": 8,
        "shards": [{"file": "data/part-0.parquet", "rows": 8, "sha256": ""}],
    }
    (folder / "dataset.json").write_text(json.dumps(card))
    return folder


@pytest.mark.parametrize("init", ["missing", "diffusion"])
def test_train_gan_init_fails_before_training_and_dry_run_shows_it(cli, tmp_path, parent, init):
    data = _dataset_card_only(tmp_path / "ds")
    bad = tmp_path / init
    if init == "diffusion":
        bad.mkdir()
        (bad / "style_denoiser.json").write_text("{}")
    train = ["train", "gan", "--preset", "tiny", "--data", data]
    code, _, err = cli(train, "--init", bad, "--out", tmp_path / "out", "--no-track")
    assert code == 2 and "--init" in err and not (tmp_path / "out").exists()
    assert err.count("error") == 1
    code, out, _ = cli(train, "--init", parent, "--dry-run")
    assert code == 0
    assert json.loads(out)["init"] == str(parent)
