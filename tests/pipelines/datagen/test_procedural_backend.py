"""The offline `procedural` backend: deterministic, styled, and honest about its pose noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.datagen.backend import ImageRequest
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.procedural_backend import (
    ProceduralBackend,
    ProceduralBackendConfig,
    mirrored_yaw,
    perturbed_yaw,
)
from avatar_platform.pipelines.datagen.spec import plan
from avatar_platform.pipelines.poses.camera import CameraConfig
from avatar_platform.pipelines.poses.template import bust_for_seed

RES = 48


def _request(style="pixar", yaw=0.0, seed=1, avatar_seed=3, attributes=None) -> ImageRequest:
    blank = np.zeros((RES, RES, 3), np.uint8)
    return ImageRequest("p", "n", seed, blank, blank, style, avatar_seed, yaw, 0.0, attributes or {})


def test_same_request_same_image_and_views_differ():
    backend = ProceduralBackend(CameraConfig())
    front = backend.render(_request(yaw=0.0), RES)
    np.testing.assert_array_equal(front, backend.render(_request(yaw=0.0), RES))
    back = backend.render(_request(yaw=180.0), RES)
    assert front.shape == (RES, RES, 3) and front.dtype == np.uint8
    assert np.abs(front.astype(int) - back).mean() > 3


def test_styles_and_attributes_change_the_colours():
    backend = ProceduralBackend(CameraConfig())
    pixar = backend.render(_request("pixar"), RES).astype(int)
    bronze = backend.render(_request("bronze-statue"), RES).astype(int)
    assert np.abs(pixar - bronze).mean() > 20
    blue = backend.render(_request(attributes={"hair color": "blue hair"}), RES).astype(int)
    red = backend.render(_request(attributes={"hair color": "red hair"}), RES).astype(int)
    assert np.abs(blue - red).sum() > 0
    # the hair pixels that changed are bluer in one and redder in the other
    changed = np.abs(blue - red).sum(axis=2) > 30
    assert changed.any()
    assert blue[changed][:, 2].mean() > red[changed][:, 2].mean()
    assert red[changed][:, 0].mean() > blue[changed][:, 0].mean()


def test_pose_noise_perturbs_only_unconfident_views_by_at_most_the_bound():
    config = ProceduralBackendConfig(pose_noise=1.0, pose_noise_degrees=30.0, confident_yaw=45.0)
    rng = np.random.default_rng(0)
    for yaw in np.linspace(-44.0, 44.0, 9):
        assert perturbed_yaw(float(yaw), rng, config) == float(yaw)
    moved = [abs(perturbed_yaw(120.0, rng, config) - 120.0) for _ in range(50)]
    assert max(moved) <= 30.0 and np.mean(moved) > 5.0
    off = ProceduralBackendConfig(pose_noise=0.0)
    assert perturbed_yaw(120.0, rng, off) == 120.0


def test_the_plan_keeps_the_planned_camera_and_records_the_rendered_yaw():
    noisy = resolve_config(
        GenerateConfig, "generate", "tiny", overrides={"num_images": 64, "procedural": {"pose_noise": 0.5}}
    )
    spec = plan(noisy).to_pylist()
    differs = [r for r in spec if abs(r["true_yaw"] - r["yaw"]) > 1e-3]
    assert differs, "pose noise 0.5 must perturb some side/back views"
    assert all(abs(r["yaw"]) >= 45.0 for r in differs)
    clean = plan(noisy.model_copy(update={"procedural": ProceduralBackendConfig()})).to_pylist()
    assert [r["camera"] for r in clean] == [r["camera"] for r in spec]  # labels unchanged
    assert all(r["true_yaw"] == r["yaw"] for r in clean)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_flip_mode_flips_exactly_the_asked_share_of_the_unconfident_views(share):
    config = resolve_config(
        GenerateConfig,
        "generate",
        "tiny",
        overrides={"num_images": 200, "procedural": {"pose_noise": share, "pose_noise_mode": "flip"}},
    )
    spec = plan(config).to_pylist()
    unconfident = [r for r in spec if abs(r["yaw"]) >= 45.0]
    assert len(unconfident) > 40
    assert all(abs(abs(r["yaw"]) - 90.0) > 1e-3 for r in unconfident)  # a mirrored profile is itself
    flipped = [r for r in spec if r["true_yaw"] != r["yaw"]]
    assert len(flipped) == round(share * len(unconfident))
    for r in flipped:  # rendered from the front-back mirror, labelled with the planned camera
        assert abs(r["yaw"]) >= 45.0
        assert r["true_yaw"] == pytest.approx(mirrored_yaw(r["yaw"]), abs=1e-4)
        if abs(r["yaw"]) > 135.0:  # a back view shows the face
            assert abs(r["true_yaw"]) < 45.0
    assert plan(config).equals(plan(config))  # the same views every time
    assert mirrored_yaw(180.0) == 0.0 and mirrored_yaw(120.0) == 60.0 and mirrored_yaw(-150.0) == -30.0


def test_the_default_mode_keeps_the_config_hash_of_datasets_planned_before_flip_mode():
    from avatar_platform.pipelines.datagen.job import config_hash

    demo = resolve_config(GenerateConfig, "generate", "demo")
    assert config_hash(demo) == "f87a6ba66c0e13ba"  # the demo dataset of the starter's card
    flip = demo.model_copy(
        update={"procedural": demo.procedural.model_copy(update={"pose_noise_mode": "flip"})}
    )
    assert config_hash(flip) != config_hash(demo)


def test_plan_is_deterministic_and_unique():
    config = resolve_config(GenerateConfig, "generate", "tiny", overrides={"num_images": 50})
    first, second = plan(config), plan(config)
    assert first.equals(second)
    ids = first["sample_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 50
    other = plan(config.model_copy(update={"seed": 1}))
    assert other["prompt"].to_pylist() != first["prompt"].to_pylist()
    assert all(json.loads(a) for a in first["attributes"].to_pylist())


def test_the_ray_caster_is_embree():
    # trimesh falls back to a pure-Python caster ~100× slower when embreex is missing
    assert "embree" in type(bust_for_seed(0).intersector).__module__


def test_a_user_mesh_template_renders(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.15)
    mesh.export(tmp_path / "ball.ply")
    (tmp_path / "ball.landmarks.json").write_text(json.dumps({"nose": [0, 0, 0.15]}))
    backend = ProceduralBackend(CameraConfig(), template_mesh=str(tmp_path / "ball.ply"))
    image = backend.render(_request(style="marble-statue"), RES)
    centre, corner = image[RES // 2, RES // 2].astype(int), image[0, 0].astype(int)
    assert np.abs(centre - corner).sum() > 60  # the sphere stands out from the background
