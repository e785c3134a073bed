"""Shared by the GAN trainer tests: a batch as the dataset reader yields it, for the tiny preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig


@pytest.fixture(scope="session")
def gan_batch():
    """`gan_batch(n)`: n ≤ 4 random uint8 pictures at the front, left, back and right cameras."""
    size = resolve_config(GanTrainingConfig, "gan", "tiny").generator.img_resolution

    def make(n: int = 4) -> dict:
        yaws = [0.0, 90.0, 180.0, -90.0][:n]
        cams = np.stack([camera_from_angles(y, 0.0, CameraConfig()) for y in yaws])
        g = torch.Generator().manual_seed(0)
        return {
            "image": torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
            "yaw": torch.tensor(yaws),
            "pitch": torch.zeros(n),
            "camera": torch.tensor(cams).float(),
        }

    return make
