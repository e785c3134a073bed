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
