"""User template meshes are checked against the cameras before any work (issue #10, D8): a mesh in
other units or off the origin, and landmarks in other units or NaN, are one clear error; and
`--template-normalize` centres and scales a mesh from its landmarks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.poses.conditioning import render_conditions
from avatar_platform.pipelines.poses.template import (
    AvatarTemplate,
    BustParams,
    build_bust,
    check_template,
    describe_normalization,
    load_user_template,
    normalize_template,
    reference_bust,
    template_for,
)


def write_bust(
    tmp_path, scale: float = 1.0, shift=(0.0, 0.0, 0.0), landmark_scale=None, edit=None, stem: str = "bust"
):
    """The default built-in bust as a PLY + landmarks JSON, scaled then shifted (the landmarks
    too, by `landmark_scale` when given); `edit(landmarks)` changes the landmarks further."""
    bust = build_bust(BustParams())
    mesh = bust.mesh.copy()
    mesh.apply_scale(scale)
    mesh.apply_translation(shift)
    path = tmp_path / f"{stem}.ply"
    mesh.export(path)
    factor = scale if landmark_scale is None else landmark_scale
    marks = {k: (np.asarray(v) * factor + shift).tolist() for k, v in bust.landmarks.items()}
    if edit:
        edit(marks)
    (tmp_path / f"{stem}.landmarks.json").write_text(json.dumps(marks))
    return path


def test_the_built_in_bust_as_a_user_mesh_passes_and_renders(tmp_path):
    template = load_user_template(write_bust(tmp_path))
    images = render_conditions(template, camera_from_angles(0.0, 0.0, CameraConfig()), 32)
    assert {"nose", "left_eye", "right_eye"} <= set(images.visible_landmarks)


def test_the_reference_size_is_what_the_readme_states():
    # README "Your own avatar meshes": a bust about 0.43 units wide, the cameras 2.7 away
    ref = reference_bust()
    assert ref["width"] == pytest.approx(0.43, abs=0.01)
    assert ref["size"] == pytest.approx(0.5, abs=0.01)
    assert ref["ear_distance"] == pytest.approx(0.2, abs=0.01)


def test_a_mesh_in_centimetres_is_refused_with_numbers_and_a_fix(tmp_path):
    with pytest.raises(AvatarPlatformError) as info:
        load_user_template(write_bust(tmp_path, scale=100.0))
    message = str(info.value)
    assert "too large" in message and "50.2" in message  # its size, in numbers
    assert "2.7" in message and "0.43" in message  # the camera radius and the expected width
    assert "--template-normalize" in message


def test_a_tiny_mesh_is_refused(tmp_path):
    with pytest.raises(AvatarPlatformError, match="too small"):
        load_user_template(write_bust(tmp_path, scale=0.01))


def test_a_mesh_shifted_off_the_origin_is_refused(tmp_path):
    with pytest.raises(AvatarPlatformError) as info:
        load_user_template(write_bust(tmp_path, shift=(5.0, 0.0, 0.0)))
    message = str(info.value)
    assert "origin" in message and "5." in message
    assert "--template-normalize" in message


def test_a_bust_standing_on_the_origin_is_refused(tmp_path):
    # exported with its base at y = 0: the head sits above the pictures' frame
    with pytest.raises(AvatarPlatformError, match="head is not at the origin"):
        load_user_template(write_bust(tmp_path, shift=(0.0, 0.3744, 0.0)))


def test_landmarks_in_other_units_than_the_mesh_are_refused(tmp_path):
    with pytest.raises(AvatarPlatformError) as info:
        load_user_template(write_bust(tmp_path, landmark_scale=100.0))
    message = str(info.value)
    assert "from the mesh surface" in message and "units" in message


def test_a_nan_landmark_is_refused(tmp_path):
    def nan_eye(marks):
        marks["left_eye"][1] = math.nan

    with pytest.raises(AvatarPlatformError, match="'left_eye'.*not a finite point"):
        load_user_template(write_bust(tmp_path, edit=nan_eye))


def test_a_mesh_with_nan_vertices_is_refused():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.15)
    vertices = mesh.vertices.copy()
    vertices[0] = np.nan
    mesh = trimesh.Trimesh(vertices, mesh.faces, process=False)
    template = AvatarTemplate(
        mesh, np.zeros(len(mesh.faces), np.uint8), {"nose": np.array([0.0, 0.0, 0.15])}, "nan"
    )
    with pytest.raises(AvatarPlatformError, match="not finite"):
        check_template(template)


def test_the_check_follows_the_camera_radius():
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.15)
    template = AvatarTemplate(
        ball, np.zeros(len(ball.faces), np.uint8), {"nose": np.array([0.0, 0.0, 0.15])}, "ball"
    )
    check_template(template)  # the cameras 2.7 away
    with pytest.raises(AvatarPlatformError, match="radius 0.2"):
        check_template(template, CameraConfig(radius=0.2))


@pytest.mark.parametrize(
    ("scale", "shift"), [(100.0, (0.0, 0.0, 0.0)), (100.0, (30.0, -12.0, 4.0)), (1.0, (5, 0, 0))]
)
def test_normalize_centres_and_scales_from_the_landmarks(tmp_path, scale, shift):
    original = build_bust(BustParams())
    template = load_user_template(write_bust(tmp_path, scale, shift), normalize=True)
    done = template.params["normalized"]
    assert done["scale"] == pytest.approx(1.0 / scale)
    assert done["from"] == "ears"
    np.testing.assert_allclose(template.mesh.vertices, original.mesh.vertices, atol=1e-5)
    np.testing.assert_allclose(template.landmarks["nose"], original.landmarks["nose"], atol=1e-5)
    text = describe_normalization(template)
    assert f"{1.0 / scale:.4g}" in text and "offset" in text


def test_normalize_from_the_eyes_without_ears(tmp_path):
    def no_ears(marks):
        del marks["left_ear"], marks["right_ear"]

    template = load_user_template(write_bust(tmp_path, 100.0, edit=no_ears), normalize=True)
    assert template.params["normalized"]["from"] == "eyes"
    assert template.params["normalized"]["scale"] == pytest.approx(0.01)


def test_normalize_needs_ears_or_eyes(tmp_path):
    def nose_only(marks):
        for name in list(marks):
            if name != "nose":
                del marks[name]

    with pytest.raises(AvatarPlatformError, match="both ears or both eyes"):
        load_user_template(write_bust(tmp_path, 100.0, edit=nose_only), normalize=True)


def test_normalize_does_not_hide_landmarks_in_other_units(tmp_path):
    with pytest.raises(AvatarPlatformError, match="from the mesh surface"):
        load_user_template(write_bust(tmp_path, landmark_scale=100.0), normalize=True)


def test_normalize_template_directly_keeps_the_input():
    bust = build_bust(BustParams())
    big = AvatarTemplate(
        bust.mesh.copy(), bust.face_parts, {k: v * 100 for k, v in bust.landmarks.items()}, "big"
    )
    big.mesh.apply_scale(100.0)
    before = big.mesh.vertices.copy()
    done = normalize_template(big)
    np.testing.assert_array_equal(big.mesh.vertices, before)
    check_template(done)
    assert done.params["normalized"]["scale"] == pytest.approx(0.01)


def test_template_for_passes_normalize_through_and_caches_each_way(tmp_path):
    path = str(write_bust(tmp_path, scale=100.0))
    normalized = template_for(0, path, None, normalize=True)
    assert normalized.params["normalized"]["scale"] == pytest.approx(0.01)
    assert template_for(1, path, None, normalize=True) is normalized  # one load per worker
    with pytest.raises(AvatarPlatformError, match="too large"):
        template_for(0, path, None)  # not normalised: refused, never rendered
