"""The camera convention (EG3D 25 numbers, OpenCV axes, yaw/pitch on a sphere) of camera.py."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from avatar_platform.pipelines.poses.camera import (
    EG3D_FOCAL,
    CameraConfig,
    camera_from_angles,
    camera_position,
    camera_rays,
    intrinsics,
    mirror_camera,
    project_points,
    sample_view_angles,
    split_camera,
)

CONFIG = CameraConfig()
ANGLES = [
    (yaw, pitch) for yaw in (-180, -135, -90, -30, 0, 17, 45, 90, 150, 180) for pitch in (-30, -10, 0, 12, 30)
]


def cam(yaw: float, pitch: float = 0.0, config: CameraConfig = CONFIG) -> np.ndarray:
    return camera_from_angles(yaw, pitch, config)


def position(camera: np.ndarray) -> np.ndarray:
    return split_camera(camera)[0][:3, 3]


def test_layout_is_cam2world_then_intrinsics():
    camera = cam(30, 10)
    assert camera.shape == (25,)
    assert camera.dtype == np.float32
    cam2world, k = split_camera(camera)
    np.testing.assert_array_equal(cam2world[3], [0, 0, 0, 1])
    np.testing.assert_allclose(k, [[EG3D_FOCAL, 0, 0.5], [0, EG3D_FOCAL, 0.5], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(camera[16:], intrinsics().reshape(-1), atol=1e-6)
    assert abs(EG3D_FOCAL - 4.2647) < 1e-12
    assert camera[16] == pytest.approx(4.2647) and camera[20] == pytest.approx(4.2647)
    assert camera[18] == pytest.approx(0.5) and camera[21] == pytest.approx(0.5)


def test_split_camera_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(25,\)"):
        split_camera(np.zeros(16))


@pytest.mark.parametrize("look_at", [(0.0, 0.0, 0.0), (0.1, -0.2, 0.3)])
@pytest.mark.parametrize(("yaw", "pitch"), ANGLES)
def test_camera_sits_at_radius_and_looks_at_the_centre(yaw, pitch, look_at):
    config = CameraConfig(look_at=look_at)
    camera = cam(yaw, pitch, config)
    assert np.linalg.norm(position(camera) - np.array(look_at)) == pytest.approx(2.7, abs=1e-5)
    uv, depth = project_points(np.array([look_at]), camera)
    np.testing.assert_allclose(uv[0], [0.5, 0.5], atol=1e-5)
    assert depth[0] == pytest.approx(2.7, abs=1e-5)


@pytest.mark.parametrize(("yaw", "pitch"), ANGLES)
def test_rotation_is_orthonormal_and_right_handed(yaw, pitch):
    rotation = split_camera(cam(yaw, pitch))[0][:3, :3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-5)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-5)


def test_radius_comes_from_config():
    assert np.linalg.norm(position(cam(40, 20, CameraConfig(radius=1.5)))) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("yaw", "expected"),
    [(0, [0, 0, 2.7]), (180, [0, 0, -2.7]), (-180, [0, 0, -2.7]), (90, [2.7, 0, 0]), (-90, [-2.7, 0, 0])],
)
def test_yaw_places_the_camera_around_the_head(yaw, expected):
    np.testing.assert_allclose(position(cam(yaw)), expected, atol=1e-5)


def test_back_view_sees_the_back_of_the_head():
    camera = cam(180)
    front_point, back_point = np.array([[0, 0, 0.15]]), np.array([[0, 0, -0.15]])
    # the back of the head (−z) is nearer to the yaw-180 camera than the face (+z)
    assert project_points(back_point, camera)[1][0] < project_points(front_point, camera)[1][0]
    # and the other way round for the frontal camera
    frontal = cam(0)
    assert project_points(front_point, frontal)[1][0] < project_points(back_point, frontal)[1][0]


def test_frontal_view_is_not_mirrored():
    camera = cam(0)
    uv, depth = project_points(np.array([[0.1, 0, 0], [-0.1, 0, 0], [0, 0.1, 0], [0, -0.1, 0]]), camera)
    assert np.all(depth > 0)
    # world +x (the avatar's left) is the image right, as a photo of a person facing us
    assert uv[0, 0] > 0.5 and uv[1, 0] < 0.5
    assert uv[0, 1] == pytest.approx(0.5) and uv[1, 1] == pytest.approx(0.5)
    # world +y is the image up (v grows downwards)
    assert uv[2, 1] < 0.5 and uv[3, 1] > 0.5
    assert uv[2, 0] == pytest.approx(0.5)


def test_projection_uses_the_focal():
    uv, _ = project_points(np.array([[0.1, 0.0, 0.0]]), cam(0))
    # the point sits 2.7 in front of the camera, 0.1 to its right
    assert uv[0, 0] == pytest.approx(0.5 + EG3D_FOCAL * 0.1 / 2.7, abs=1e-5)


def test_side_view_sees_the_face_on_the_correct_side():
    # camera at +x (yaw 90) sees the avatar's left; the face (+z) is towards the image left
    uv, _ = project_points(np.array([[0, 0, 0.15]]), cam(90))
    assert uv[0, 0] < 0.5
    uv, _ = project_points(np.array([[0, 0, 0.15]]), cam(-90))
    assert uv[0, 0] > 0.5


@pytest.mark.parametrize("pitch", [5, 15, 30])
def test_positive_pitch_puts_the_camera_above(pitch):
    assert position(cam(0, pitch))[1] > 0
    assert position(cam(120, pitch))[1] > 0
    assert position(cam(0, -pitch))[1] < 0
    assert position(cam(0, pitch))[1] == pytest.approx(2.7 * np.sin(np.radians(pitch)), abs=1e-5)
    # looking down: the camera's forward axis (column 2) points towards −y
    assert split_camera(cam(0, pitch))[0][1, 2] < 0


def test_camera_position_matches_camera_from_angles():
    np.testing.assert_allclose(camera_position(60, 20, 2.7, (0, 0, 0)), position(cam(60, 20)), atol=1e-5)


@pytest.mark.parametrize(("yaw", "pitch"), [(0, 0), (35, -20), (180, 10), (-100, 30)])
def test_camera_rays_centre_ray_points_at_look_at(yaw, pitch):
    camera = cam(yaw, pitch)
    resolution = 9  # odd: one pixel centre sits exactly on the optical axis
    origins, dirs, cos_forward = camera_rays(camera, resolution)
    assert origins.shape == dirs.shape == (resolution * resolution, 3)
    assert cos_forward.shape == (resolution * resolution,)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(origins, np.broadcast_to(position(camera), origins.shape), atol=1e-5)
    centre = (resolution // 2) * resolution + resolution // 2
    to_target = -position(camera) / np.linalg.norm(position(camera))
    np.testing.assert_allclose(dirs[centre], to_target, atol=1e-5)
    assert cos_forward[centre] == pytest.approx(1.0)
    # the centre ray is the optical axis, every other ray leans away from it
    assert cos_forward.argmax() == centre
    assert np.all(cos_forward[np.arange(len(cos_forward)) != centre] < 1.0)


def test_camera_rays_are_row_major_and_hit_their_pixels():
    camera = cam(25, 10)
    resolution = 8
    origins, dirs, cos_forward = camera_rays(camera, resolution)
    points = origins + 2.0 * dirs
    uv, depth = project_points(points, camera)
    centres = (np.arange(resolution) + 0.5) / resolution
    v, u = np.meshgrid(centres, centres, indexing="ij")
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], axis=1), atol=1e-6)
    # hit distance × cos_forward = z-depth
    np.testing.assert_allclose(depth, 2.0 * cos_forward, atol=1e-6)


@pytest.mark.parametrize(("yaw", "pitch"), ANGLES)
def test_mirror_camera_is_the_camera_at_minus_yaw(yaw, pitch):
    mirrored = mirror_camera(cam(yaw, pitch))
    assert mirrored.shape == (25,) and mirrored.dtype == np.float32
    np.testing.assert_allclose(mirrored, cam(-yaw, pitch), atol=1e-5)


def test_mirror_camera_mirrors_the_image():
    camera = cam(40, 10)
    point = np.array([[0.05, 0.08, 0.12]])
    uv, depth = project_points(point, camera)
    uv_m, depth_m = project_points(point * np.array([-1, 1, 1]), mirror_camera(camera))
    np.testing.assert_allclose(uv_m[0], [1.0 - uv[0, 0], uv[0, 1]], atol=1e-5)
    assert depth_m[0] == pytest.approx(depth[0], abs=1e-5)
    np.testing.assert_allclose(mirror_camera(mirror_camera(camera)), camera, atol=1e-6)


@pytest.mark.parametrize(
    ("yaw_range", "pitch_range"),
    [((-180.0, 180.0), (-30.0, 30.0)), ((-45.0, 45.0), (0.0, 10.0)), ((10.0, 20.0), (-5.0, -5.0))],
)
@pytest.mark.parametrize("views", [1, 4, 10])
def test_sample_view_angles_stay_in_range(yaw_range, pitch_range, views):
    config = CameraConfig(yaw_range=yaw_range, pitch_range=pitch_range)
    for seed in range(20):
        yaw, pitch = sample_view_angles(np.random.default_rng(seed), views, config)
        assert yaw.shape == pitch.shape == (views,)
        assert np.all(yaw >= yaw_range[0]) and np.all(yaw <= yaw_range[1])
        assert np.all(pitch >= pitch_range[0]) and np.all(pitch <= pitch_range[1])


def test_sample_view_angles_are_stratified_over_the_circle():
    yaw, _ = sample_view_angles(np.random.default_rng(3), 8, CONFIG)
    gaps = np.diff(np.sort(yaw))
    np.testing.assert_allclose(gaps, 45.0, atol=1e-9)


def test_sample_view_angles_deterministic_per_seed():
    a = sample_view_angles(np.random.default_rng(7), 6, CONFIG)
    b = sample_view_angles(np.random.default_rng(7), 6, CONFIG)
    c = sample_view_angles(np.random.default_rng(8), 6, CONFIG)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"yaw_range": (30.0, -30.0)},
        {"pitch_range": (10.0, -10.0)},
        {"yaw_range": (-200.0, 0.0)},
        {"pitch_range": (-30.0, 90.0)},
        {"radius": 0.0},
    ],
)
def test_camera_config_rejects_bad_values(kwargs):
    with pytest.raises(ValidationError):
        CameraConfig(**kwargs)


def test_camera_config_error_names_the_range():
    with pytest.raises(ValidationError, match="yaw_range must be"):
        CameraConfig(yaw_range=(30.0, -30.0))
