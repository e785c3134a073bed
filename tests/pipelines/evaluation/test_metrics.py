"""FID/KID and the geometry error behave like distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.evaluation.fid import (
    frechet_distance,
    inception_feature_extractor,
    kernel_inception_distance,
    random_feature_extractor,
)
from avatar_platform.pipelines.evaluation.geometry import chamfer_distance, nearest_template_error


def test_fid_and_kid_are_zero_for_the_same_set_and_grow_with_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8))
    near, far = b + 0.2, b + 2.0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < frechet_distance(a, near) < frechet_distance(a, far)
    # for equal covariances FID is the squared distance of the means
    assert frechet_distance(b, far) == pytest.approx(8 * 2.0**2, rel=1e-6)
    assert abs(kernel_inception_distance(a, b)) < kernel_inception_distance(a, far)


def test_random_features_are_deterministic_and_separate_different_images():
    extract = random_feature_extractor()
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(extract(images), random_feature_extractor()(images))
    dark, light = -torch.ones(20, 3, 32, 32), torch.ones(20, 3, 32, 32) * 0.8
    noise = torch.randn(20, 3, 32, 32) * 0.05
    fid_same = frechet_distance(extract(dark + noise).numpy(), extract(dark - noise).numpy())
    fid_diff = frechet_distance(extract(dark + noise).numpy(), extract(light + noise).numpy())
    assert fid_diff > 10 * max(fid_same, 1e-6)


def test_missing_inception_weights_is_one_clear_error(tmp_path):
    with pytest.raises(AvatarPlatformError, match="InceptionV3 weights not found"):
        inception_feature_extractor(tmp_path / "nope.pth")


def test_chamfer_distance_of_spheres():
    small = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    big = trimesh.creation.icosphere(subdivisions=4, radius=0.25)
    assert chamfer_distance(small, small) < 0.01
    assert chamfer_distance(small, big) == pytest.approx(0.05, abs=0.01)
    moved = big.copy()
    moved.apply_translation([0.3, 0, 0])
    assert nearest_template_error(small, [moved, big]) == pytest.approx(0.05, abs=0.01)
    assert chamfer_distance(small, trimesh.Trimesh()) == float("inf")
