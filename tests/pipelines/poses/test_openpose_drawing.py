"""Our COCO-18 OpenPose drawing is controlnet-aux's, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.poses.conditioning import openpose_image, visible_landmarks
from avatar_platform.pipelines.poses.template import COCO18_NAMES, bust_for_seed


def _reference(points: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    from controlnet_aux.open_pose.body import Keypoint
    from controlnet_aux.open_pose.util import draw_bodypose

    keypoints = [
        Keypoint(float(points[name][0]), float(points[name][1])) if name in points else None
        for name in COCO18_NAMES
    ]
    return draw_bodypose(np.zeros((resolution, resolution, 3), np.uint8), keypoints)


@pytest.mark.parametrize("yaw", [0.0, 37.0, 90.0, 150.0, 180.0, -65.0, -120.0])
@pytest.mark.parametrize("resolution", [64, 512])
def test_bust_poses_match_controlnet_aux(yaw, resolution):
    points = visible_landmarks(bust_for_seed(2), camera_from_angles(yaw, 12.0, CameraConfig()))
    np.testing.assert_array_equal(openpose_image(points, resolution), _reference(points, resolution))


def test_a_full_random_skeleton_matches_controlnet_aux():
    rng = np.random.default_rng(0)
    for _ in range(20):
        points = {name: rng.uniform(0.05, 0.95, size=2) for name in COCO18_NAMES if rng.uniform() < 0.8}
        np.testing.assert_array_equal(openpose_image(points, 256), _reference(points, 256))
