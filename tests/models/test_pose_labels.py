"""The coarse-to-fine pose label of docs/method.md §3."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_platform.models.discriminator import PoseConditioningConfig, pose_label
from avatar_platform.pipelines.poses.view_bins import ViewBinConfig, pose_labels

CONFIG = PoseConditioningConfig()


def _label(yaw, pitch=0.0, config=CONFIG, seed=0):
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1)
    pitch = torch.full_like(yaw, pitch)
    camera = torch.zeros(len(yaw), 25)
    return pose_label(yaw, pitch, camera, config, torch.Generator().manual_seed(seed))


def test_fine_and_coarse_one_hots_match_the_dataset_bins():
    rng = np.random.default_rng(0)
    yaw = rng.uniform(-180, 180, 200)
    pitch = rng.uniform(-30, 30, 200)
    fine_np, coarse_np = pose_labels(yaw, pitch, ViewBinConfig())
    cam = torch.zeros(200, 25)
    for mode, expected in (("fine", fine_np), ("coarse", coarse_np)):
        label = pose_label(
            torch.tensor(yaw), torch.tensor(pitch), cam, CONFIG.model_copy(update={"mode": mode})
        )
        np.testing.assert_array_equal(label.numpy(), expected)


def test_coarse_to_fine_keeps_exactly_one_of_the_two():
    label = _label(np.linspace(-180, 180, 100))
    fine, coarse = label[:, : CONFIG.fine_dim], label[:, CONFIG.fine_dim :]
    assert label.shape == (100, 12 + 3 + 4 + 1)
    kept_fine = fine.sum(1) == 2
    kept_coarse = coarse.sum(1) == 2
    assert torch.all(kept_fine ^ kept_coarse)
    assert torch.all(fine[~kept_fine] == 0) and torch.all(coarse[~kept_coarse] == 0)


@pytest.mark.parametrize(
    ("yaw", "p_fine"), [(0.0, 0.9), (30.0, 0.9), (90.0, 0.1), (180.0, 0.1), (-150.0, 0.1), (-44.0, 0.9)]
)
def test_confident_views_keep_the_fine_label_with_p_high_others_with_p_low(yaw, p_fine):
    label = _label([yaw] * 4000)
    share = (label[:, : CONFIG.fine_dim].sum(1) == 2).float().mean().item()
    assert abs(share - p_fine) < 0.03


def test_probabilities_are_configurable_and_seeded():
    always = CONFIG.model_copy(update={"p_high": 1.0, "p_low": 0.0})
    label = _label([0.0, 10.0, 100.0, 180.0], config=always)
    assert label[:2, : always.fine_dim].sum() == 4 and label[2:, : always.fine_dim].sum() == 0
    torch.testing.assert_close(_label([120.0] * 50, seed=5), _label([120.0] * 50, seed=5))


def test_camera_and_none_modes():
    camera = torch.randn(3, 25)
    cam_mode = CONFIG.model_copy(update={"mode": "camera"})
    torch.testing.assert_close(pose_label(torch.zeros(3), torch.zeros(3), camera, cam_mode), camera)
    none = CONFIG.model_copy(update={"mode": "none"})
    assert pose_label(torch.zeros(3), torch.zeros(3), camera, none).shape == (3, 0)
