"""A training state written by another format of avatar-platform is refused with one clear
error on --resume, rather than half-loaded."""

from __future__ import annotations

import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
from avatar_platform.pipelines.training.diffusion.trainer import DiffusionTrainer
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.trainer import GanTrainer


def _bump_version(folder) -> None:
    state = torch.load(folder / "training_state.pt", weights_only=True)
    state["format_version"] = 99
    torch.save(state, folder / "training_state.pt")


def test_a_gan_state_of_another_format_is_refused(tmp_path):
    config = resolve_config(GanTrainingConfig, "gan", "tiny")
    GanTrainer(config).save(tmp_path)
    GanTrainer(config).load(tmp_path)  # this format loads
    _bump_version(tmp_path)
    with pytest.raises(AvatarPlatformError, match="GAN training state .* format_version 99"):
        GanTrainer(config).load(tmp_path)


def test_a_diffusion_state_of_another_format_is_refused(tmp_path, tiny_generator):
    config = resolve_config(DiffusionTrainingConfig, "diffusion", "tiny")
    DiffusionTrainer(config, tiny_generator).save(tmp_path)
    DiffusionTrainer(config, tiny_generator).load(tmp_path)
    _bump_version(tmp_path)
    with pytest.raises(AvatarPlatformError, match="diffusion training state .* format_version 99"):
        DiffusionTrainer(config, tiny_generator).load(tmp_path)


def test_a_diffusion_model_of_another_format_is_refused_when_sampled(tmp_path, tiny_generator):
    import json

    from avatar_platform.formats.model_folder import DIFFUSION_META
    from avatar_platform.pipelines.inference.style_sampling import load_style_diffusion

    config = resolve_config(DiffusionTrainingConfig, "diffusion", "tiny")
    DiffusionTrainer(config, tiny_generator).save(tmp_path / "now")
    assert load_style_diffusion(tmp_path / "now")[2] is not None  # this format loads
    DiffusionTrainer(config, tiny_generator).save(tmp_path / "other")
    meta = json.loads((tmp_path / "other" / DIFFUSION_META).read_text())
    (tmp_path / "other" / DIFFUSION_META).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(AvatarPlatformError, match="style diffusion .* format_version 99"):
        load_style_diffusion(tmp_path / "other")
