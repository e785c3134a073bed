"""Avatar templates (template.py) and the ControlNet guidance images rendered from them
(conditioning.py): landmarks, visibility, OpenPose colours, MiDaS depth, user meshes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles, project_points
from avatar_platform.pipelines.poses.conditioning import raycast, render_conditions
from avatar_platform.pipelines.poses.template import (
    COCO18_NAMES,
    PART_NAMES,
    AvatarTemplate,
    BustParams,
    build_bust,
    load_user_template,
)

RESOLUTION = 64
LANDMARKS = (
    "nose",
    "neck",
    "right_shoulder",
    "left_shoulder",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
# controlnet-aux's COCO-18 keypoint colours (RGB), drawn as solid discs
COLOUR = {
    "nose": (255, 0, 0),
    "right_eye": (170, 0, 255),
    "left_eye": (255, 0, 255),
    "right_ear": (255, 0, 170),
    "left_ear": (255, 0, 85),
}
# seeds whose busts wear no glasses (a glasses frame seen edge-on hides the eye in profile)
SEEDS = (0, 1, 2, 3)
CONFIG = CameraConfig()


def cam(yaw: float, pitch: float = 0.0) -> np.ndarray:
    return camera_from_angles(yaw, pitch, CONFIG)


def colour_pixels(image: np.ndarray, colour) -> np.ndarray:
    """(N, 2) (row, col) of the pixels that have exactly `colour`."""
    return np.argwhere(np.all(image == np.array(colour, np.uint8), axis=-1))


def has_colour(image: np.ndarray, colour) -> bool:
    return len(colour_pixels(image, colour)) > 0


def pixel_of(point: np.ndarray, camera: np.ndarray, resolution: int = RESOLUTION):
    uv, _ = project_points(np.asarray(point, dtype=np.float64)[None], camera)
    col, row = np.clip((uv[0] * resolution).astype(int), 0, resolution - 1)
    return row, col


@pytest.fixture(scope="module")
def busts():
    return {seed: build_bust(BustParams.sample(seed), template_id=f"bust-{seed}") for seed in SEEDS}


@pytest.fixture(scope="module")
def renders(busts):
    """(seed, yaw) → ConditionImages at yaw 0, 180, 90, −90."""
    return {
        (seed, yaw): render_conditions(bust, cam(yaw), RESOLUTION)
        for seed, bust in busts.items()
        for yaw in (0, 180, 90, -90)
    }


# --- templates -------------------------------------------------------------------------------


def test_bust_params_sample_is_deterministic():
    assert BustParams.sample(5) == BustParams.sample(5)
    assert BustParams.sample(5) != BustParams.sample(6)


def test_build_bust_is_deterministic_per_seed(busts):
    again = build_bust(BustParams.sample(0), template_id="bust-0")
    np.testing.assert_array_equal(again.mesh.vertices, busts[0].mesh.vertices)
    np.testing.assert_array_equal(again.mesh.faces, busts[0].mesh.faces)
    np.testing.assert_array_equal(again.face_parts, busts[0].face_parts)
    for name in LANDMARKS:
        np.testing.assert_array_equal(again.landmarks[name], busts[0].landmarks[name])


def test_different_seeds_give_different_busts(busts):
    a, b = busts[0].mesh.vertices, busts[1].mesh.vertices
    assert a.shape != b.shape or not np.allclose(a, b)
    assert busts[0].params != busts[1].params


def test_bust_has_all_landmarks_and_part_ids(busts):
    for bust in busts.values():
        assert set(bust.landmarks) == set(LANDMARKS)
        assert set(bust.landmarks) <= set(COCO18_NAMES)
        for point in bust.landmarks.values():
            assert point.shape == (3,) and np.all(np.isfinite(point))
        assert bust.face_parts.shape == (len(bust.mesh.faces),)
        assert bust.face_parts.max() < len(PART_NAMES)


def test_bust_landmarks_follow_the_world_convention(busts):
    marks = busts[0].landmarks
    # the face looks along +z, the avatar's left is +x, up is +y
    assert marks["nose"][2] > marks["left_ear"][2] and marks["nose"][2] > 0.05
    assert marks["left_eye"][0] > 0 > marks["right_eye"][0]
    assert marks["left_ear"][0] > 0 > marks["right_ear"][0]
    assert marks["left_shoulder"][0] > 0 > marks["right_shoulder"][0]
    assert marks["left_eye"][1] > marks["nose"][1] > marks["neck"][1]


def test_bust_fits_the_field_of_view(busts):
    for bust in busts.values():
        for yaw in (0, 90, 180):
            uv, depth = project_points(bust.mesh.vertices, cam(yaw))
            assert np.all(depth > 0)
            # head, hair and hats are whole and the shoulders' width fits; the frame's bottom
            # edge may cut the chest, as in a portrait
            assert uv[:, 0].min() > 0.0 and uv[:, 0].max() < 1.0
            assert uv[:, 1].min() > 0.0
            marks, _ = project_points(np.stack(list(bust.landmarks.values())), cam(yaw))
            assert marks.min() > 0.0 and marks.max() < 1.0


# --- visibility and OpenPose -----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_frontal_view_sees_the_face_back_view_does_not(renders, seed):
    front = renders[(seed, 0)].visible_landmarks
    back = renders[(seed, 180)].visible_landmarks
    assert {"nose", "right_eye", "left_eye"} <= set(front)
    assert not {"nose", "right_eye", "left_eye"} & set(back)
    # skeletal joints are reported from every side
    assert {"neck", "right_shoulder", "left_shoulder"} <= set(back)


@pytest.mark.parametrize("seed", SEEDS)
def test_openpose_eye_colours_only_in_frontal_view(renders, seed):
    front = renders[(seed, 0)].openpose
    back = renders[(seed, 180)].openpose
    assert front.shape == (RESOLUTION, RESOLUTION, 3) and front.dtype == np.uint8
    for name in ("right_eye", "left_eye", "nose"):
        assert not has_colour(back, COLOUR[name]), name
    assert has_colour(front, COLOUR["right_eye"])
    assert has_colour(front, COLOUR["left_eye"])
    # black background, something drawn on it
    assert front[0, 0].tolist() == [0, 0, 0]
    assert back.any()


@pytest.mark.parametrize("seed", SEEDS)
def test_openpose_is_not_mirrored_in_frontal_view(renders, seed):
    image = renders[(seed, 0)].openpose
    centre = RESOLUTION / 2
    # the avatar's left (world +x) is drawn on the image right
    assert colour_pixels(image, COLOUR["left_eye"])[:, 1].mean() > centre
    assert colour_pixels(image, COLOUR["right_eye"])[:, 1].mean() < centre
    assert colour_pixels(image, COLOUR["left_ear"])[:, 1].mean() > centre
    assert colour_pixels(image, COLOUR["right_ear"])[:, 1].mean() < centre


@pytest.mark.parametrize("seed", SEEDS)
def test_side_views_see_the_correct_side(renders, seed):
    left_view = renders[(seed, 90)]  # camera at +x sees the avatar's left
    assert {"left_eye", "left_ear", "nose"} <= set(left_view.visible_landmarks)
    assert not {"right_eye", "right_ear"} & set(left_view.visible_landmarks)
    assert has_colour(left_view.openpose, COLOUR["left_eye"])
    assert has_colour(left_view.openpose, COLOUR["left_ear"])
    assert not has_colour(left_view.openpose, COLOUR["right_eye"])
    assert not has_colour(left_view.openpose, COLOUR["right_ear"])

    right_view = renders[(seed, -90)]
    assert {"right_eye", "right_ear", "nose"} <= set(right_view.visible_landmarks)
    assert not {"left_eye", "left_ear"} & set(right_view.visible_landmarks)
    assert has_colour(right_view.openpose, COLOUR["right_eye"])
    assert not has_colour(right_view.openpose, COLOUR["left_eye"])


def test_visible_landmarks_are_in_coco_order(renders):
    names = renders[(0, 0)].visible_landmarks
    assert list(names) == [name for name in COCO18_NAMES if name in names]


# --- depth and mask --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("yaw", [0, 180, 90, -90])
def test_depth_background_zero_foreground_positive_mask_matches(renders, seed, yaw):
    images = renders[(seed, yaw)]
    depth = images.depth
    assert depth.shape == (RESOLUTION, RESOLUTION, 3) and depth.dtype == np.uint8
    # a grey image: the three channels agree
    np.testing.assert_array_equal(depth[..., 0], depth[..., 1])
    np.testing.assert_array_equal(depth[..., 0], depth[..., 2])
    assert images.mask.shape == (RESOLUTION, RESOLUTION) and images.mask.dtype == bool
    assert 0.05 < images.mask.mean() < 0.9
    assert np.all(depth[~images.mask] == 0)
    assert np.all(depth[images.mask] > 0)
    np.testing.assert_array_equal(images.mask, depth[..., 0] > 0)
    # normalised over the foreground: the nearest point is white
    assert depth[images.mask, 0].max() == 255


@pytest.mark.parametrize("seed", SEEDS)
def test_nose_is_brighter_than_the_sides_of_the_head(busts, renders, seed):
    camera = cam(0)
    depth = renders[(seed, 0)].depth[..., 0]
    row, col = pixel_of(busts[seed].landmarks["nose"], camera)
    assert depth[row, col] > 0
    foreground = np.flatnonzero(depth[row] > 0)
    # the outermost foreground pixels of the nose's row lie on the sides of the head, further away
    assert depth[row, col] > depth[row, foreground.min()]
    assert depth[row, col] > depth[row, foreground.max()]


def test_side_of_head_is_nearer_than_the_face_in_profile(busts, renders):
    # from yaw 90 the left ear faces the camera and the nose is seen at grazing angle
    camera = cam(90)
    depth = renders[(0, 90)].depth[..., 0]
    ear = depth[pixel_of(busts[0].landmarks["left_ear"], camera)]
    nose = depth[pixel_of(busts[0].landmarks["nose"], camera)]
    assert ear > nose > 0


def two_spheres() -> AvatarTemplate:
    near = trimesh.creation.icosphere(subdivisions=3, radius=0.08)
    near.apply_translation([-0.12, 0.0, 0.4])
    far = trimesh.creation.icosphere(subdivisions=3, radius=0.08)
    far.apply_translation([0.12, 0.0, -0.4])
    mesh = trimesh.util.concatenate([near, far])
    return AvatarTemplate(
        mesh=mesh,
        face_parts=np.zeros(len(mesh.faces), np.uint8),
        landmarks={"nose": np.array([-0.12, 0.0, 0.48])},
        template_id="two-spheres",
    )


def test_depth_ordering_of_a_simple_scene():
    scene = two_spheres()
    camera = cam(0)  # at +z: the sphere at z=0.4 is nearer than the one at z=-0.4
    images = render_conditions(scene, camera, RESOLUTION)
    depth = images.depth[..., 0]
    near_pixel = depth[pixel_of([-0.12, 0.0, 0.4], camera)]
    far_pixel = depth[pixel_of([0.12, 0.0, -0.4], camera)]
    assert near_pixel > far_pixel > 0
    # every near-sphere pixel (image left, world −x) is brighter than every far-sphere pixel
    left, right = images.mask.copy(), images.mask.copy()
    left[:, RESOLUTION // 2 :] = False
    right[:, : RESOLUTION // 2] = False
    assert left.any() and right.any()
    assert depth[left].min() > depth[right].max()
    assert depth[left].max() == 255 and depth[right].min() == 26  # 0.1 above the background
    # seen from behind, the order flips
    back = render_conditions(scene, cam(180), RESOLUTION)
    back_camera = cam(180)
    assert (
        back.depth[pixel_of([0.12, 0.0, -0.4], back_camera)][0]
        > back.depth[pixel_of([-0.12, 0.0, 0.4], back_camera)][0]
    )
    assert images.visible_landmarks == ("nose",)
    assert "nose" not in back.visible_landmarks


def test_raycast_depth_is_camera_z_depth():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    template = AvatarTemplate(
        sphere, np.zeros(len(sphere.faces), np.uint8), {"nose": np.array([0, 0, 0.5])}, "sphere"
    )
    resolution = 33
    gbuffer = raycast(template, cam(30, 10), resolution)
    centre = resolution // 2
    assert gbuffer.mask[centre, centre]
    assert gbuffer.depth[centre, centre] == pytest.approx(2.7 - 0.5, abs=5e-3)
    assert np.all(np.isinf(gbuffer.depth[~gbuffer.mask]))
    assert np.all(gbuffer.part[~gbuffer.mask] == 255)
    assert np.all(gbuffer.part[gbuffer.mask] == 0)
    # normals face the camera
    position = camera_from_angles(30, 10, CONFIG)[[3, 7, 11]]
    to_camera = position - gbuffer.position[gbuffer.mask]
    assert np.all(np.sum(gbuffer.normal[gbuffer.mask] * to_camera, axis=1) > 0)


# --- user templates --------------------------------------------------------------------------


def write_user_mesh(tmp_path, landmarks: dict | None = None, stem: str = "head"):
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.15)
    path = tmp_path / f"{stem}.ply"
    mesh.export(path)
    if landmarks is not None:
        (tmp_path / f"{stem}.landmarks.json").write_text(json.dumps(landmarks))
    return path, mesh


def test_load_user_template(tmp_path):
    marks = {"nose": [0.0, 0.0, 0.15], "left_eye": [0.05, 0.04, 0.14]}
    path, mesh = write_user_mesh(tmp_path, marks)
    template = load_user_template(path)
    assert isinstance(template, AvatarTemplate)
    assert template.template_id == "mesh-head"
    assert len(template.mesh.faces) == len(mesh.faces)
    np.testing.assert_allclose(template.mesh.vertices, mesh.vertices, atol=1e-6)
    assert template.face_parts.shape == (len(mesh.faces),)
    assert set(template.landmarks) == {"nose", "left_eye"}
    np.testing.assert_allclose(template.landmarks["left_eye"], [0.05, 0.04, 0.14])
    # and it renders: the nose faces the frontal camera
    images = render_conditions(template, cam(0), 32)
    assert "nose" in images.visible_landmarks and images.mask.any()


def test_load_user_template_with_explicit_landmarks_path(tmp_path):
    path, _ = write_user_mesh(tmp_path)
    other = tmp_path / "marks.json"
    other.write_text(json.dumps({"nose": [0, 0, 0.15]}))
    assert set(load_user_template(path, other).landmarks) == {"nose"}
    assert set(load_user_template(str(path), str(other)).landmarks) == {"nose"}


def test_missing_mesh_raises(tmp_path):
    with pytest.raises(AvatarPlatformError, match="does not exist"):
        load_user_template(tmp_path / "nope.ply")


def test_unreadable_mesh_raises(tmp_path):
    path = tmp_path / "garbage.ply"
    path.write_bytes(bytes(range(256)) * 4)
    (tmp_path / "garbage.landmarks.json").write_text(json.dumps({"nose": [0, 0, 0.1]}))
    with pytest.raises(AvatarPlatformError, match="cannot read the template mesh") as info:
        load_user_template(path)
    assert str(path) in str(info.value)


def test_missing_landmarks_file_raises(tmp_path):
    path, _ = write_user_mesh(tmp_path)
    with pytest.raises(AvatarPlatformError, match="no landmarks file") as info:
        load_user_template(path)
    assert "head.landmarks.json" in str(info.value)


@pytest.mark.parametrize(
    ("landmarks", "match"),
    [
        ({"left_eye": [0.05, 0.04, 0.14]}, "no 'nose' point"),
        ({"nose": [0, 0, 0.15], "chin": [0, -0.1, 0.1]}, r"unknown names \['chin'\]"),
        ({"nose": [0, 0]}, "cannot read landmarks"),
        (["nose", 0, 0, 0.15], "cannot read landmarks"),
    ],
)
def test_bad_landmarks_raise(tmp_path, landmarks, match):
    path, _ = write_user_mesh(tmp_path)
    (tmp_path / "head.landmarks.json").write_text(json.dumps(landmarks))
    with pytest.raises(AvatarPlatformError, match=match):
        load_user_template(path)


def test_landmarks_not_json_raises(tmp_path):
    path, _ = write_user_mesh(tmp_path)
    (tmp_path / "head.landmarks.json").write_text("{nose: [0, 0")
    with pytest.raises(AvatarPlatformError, match="cannot read landmarks"):
        load_user_template(path)
