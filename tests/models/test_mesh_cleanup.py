"""Meshes a person can use: border band, opacity level, components, smoothing, decimation, and
GLBs that pass the Khronos glTF validator (`make gltf-validator` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_platform.models.eg3d.volume_renderer import composite
from avatar_platform.models.mesh import BORDER_FRACTION, border_voxels, extract_mesh, opacity_level

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tools" / "validate_gltf.mjs"
BIG, SMALL = (torch.tensor([-0.15, 0.0, 0.0]), 0.2), (torch.tensor([0.28, 0.25, 0.25]), 0.05)


def _two_spheres(points):
    """Raw density crossing 10 on a big sphere and on a tiny one."""
    (c1, r1), (c2, r2) = BIG, SMALL
    inside = torch.maximum(r1 - (points - c1).norm(dim=-1), r2 - (points - c2).norm(dim=-1))
    return 10.0 + 100.0 * inside


def _position_colour(points):
    return (points + 0.5).clamp(0, 1)


def validate_glb(paths: list[Path]) -> dict:
    """The validator's reports {path: report} (a failure, not a skip, where it is missing: like
    Chromium for the browser test, `make test` installs it)."""
    node = shutil.which("node")
    assert node is not None, "no node: the glTF validator needs Node.js (apt-get install nodejs)"
    assert (ROOT / "tools/node/node_modules/gltf-validator").is_dir(), (
        "the glTF validator is not installed: `make gltf-validator` (part of `make test`)"
    )
    done = subprocess.run(
        [node, str(VALIDATOR), *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def assert_valid_glb(paths: list[Path]) -> None:
    reports = validate_glb(paths)
    assert sorted(reports) == sorted(map(str, paths))
    for path, report in reports.items():
        messages = [m for m in report["issues"]["messages"] if m["severity"] == 0]
        assert report["issues"]["numErrors"] == 0, (path, messages)


def test_largest_keeps_the_big_sphere_and_all_keeps_both():
    largest = extract_mesh(_two_spheres, resolution=64, level=10.0, keep="largest")
    both = extract_mesh(_two_spheres, resolution=64, level=10.0, keep="all")
    assert len(largest.split(only_watertight=False)) == 1
    assert len(both.split(only_watertight=False)) == 2
    centre, radius = BIG
    radii = np.linalg.norm(largest.vertices - centre.numpy(), axis=1)
    np.testing.assert_allclose(radii, radius, atol=1.0 / 64)
    assert len(both.faces) > len(largest.faces)


def test_unknown_keep_and_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="keep"):
        extract_mesh(_two_spheres, resolution=16, level=10.0, keep="biggest")
    with pytest.raises(ValueError, match="face budget"):
        extract_mesh(_two_spheres, resolution=16, level=10.0, faces=0)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_the_border_band_leaves_no_face_near_the_box_even_when_the_density_fills_it(resolution):
    mesh = extract_mesh(
        lambda p: torch.full((len(p),), 100.0), resolution, box_size=1.0, level=10.0, keep="all"
    )
    band = border_voxels(resolution)
    spacing = 1.0 / (resolution - 1)
    assert band >= 2 and band == int(np.ceil(BORDER_FRACTION * (resolution - 1)))
    assert len(mesh.faces) > 0 and mesh.is_watertight  # a closed box inside the band
    distance_to_box = 0.5 - np.abs(mesh.vertices).max()
    assert distance_to_box > (band - 1) * spacing
    assert distance_to_box > BORDER_FRACTION - 2 * spacing  # about the same share at any size


def test_the_auto_level_is_where_one_ray_step_turns_half_opaque():
    step = 1.05 / 16  # the demo preset's stratified spacing
    level = opacity_level(step)
    # the renderer's own compositing of one step at that density
    depths = torch.tensor([0.0, step]).reshape(1, 1, 2, 1)
    sigma = torch.full_like(depths, level)
    _, _, _, opacity = composite(torch.zeros(1, 1, 2, 3), sigma, depths)
    np.testing.assert_allclose(opacity.item(), 0.5, atol=1e-5)
    # a sphere of constant density 4·level with a smooth (logistic) falloff of width w
    peak, radius, width = 4 * level, 0.25, 0.02

    def density(points):
        return peak * torch.sigmoid((radius - points.norm(dim=-1)) / width)

    mesh = extract_mesh(density, resolution=96, level="auto", ray_step=step)
    assert mesh.metadata["level_rule"] == "opacity"
    np.testing.assert_allclose(mesh.metadata["level"], level)
    expected = radius + width * np.log(peak / level - 1)  # where peak·sigmoid(…) = level
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), expected, atol=1.0 / 96)


def test_auto_falls_back_to_the_occupancy_level_for_a_thin_model():
    def thin(points):  # nowhere near opaque: an untrained generator
        return 1.5 - points.norm(dim=-1)

    mesh = extract_mesh(thin, resolution=32, level="auto", ray_step=0.05)
    assert mesh.metadata["level_rule"] == "occupancy fallback" and len(mesh.faces) > 0
    assert 0.05 < mesh.volume < 0.1  # about 8% of the unit box


def test_decimation_meets_the_budget_and_colours_follow_the_vertices():
    full = extract_mesh(_two_spheres, resolution=64, level=10.0, color=_position_colour)
    mesh = extract_mesh(_two_spheres, resolution=64, level=10.0, color=_position_colour, smooth=3, faces=1000)
    assert len(full.faces) > 5000 and 900 <= len(mesh.faces) <= 1000
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.volume, full.volume, rtol=0.03)
    colours = mesh.visual.vertex_colors
    assert colours.shape == (len(mesh.vertices), 4)
    expected = np.clip(mesh.vertices + 0.5, 0, 1) * 255
    np.testing.assert_allclose(colours[:, :3], expected, atol=1.0)
    assert len(np.unique(colours[:, 0])) > 50  # not one flat colour


def test_smoothing_keeps_the_volume_and_evens_out_the_steps():
    def step(points):  # a binary sphere: marching cubes gives a staircase
        return torch.where(points.norm(dim=-1) < 0.3, 100.0, 0.0)

    def normal_error(mesh):
        centres = mesh.triangles_center / np.linalg.norm(mesh.triangles_center, axis=1)[:, None]
        return np.degrees(np.arccos(np.clip((mesh.face_normals * centres).sum(1), -1, 1))).mean()

    raw = extract_mesh(step, resolution=48, level=10.0)
    smooth = extract_mesh(step, resolution=48, level=10.0, smooth=5)
    assert normal_error(smooth) < 0.7 * normal_error(raw)
    np.testing.assert_allclose(smooth.volume, raw.volume, rtol=0.02)


def test_meshes_export_to_valid_glbs(tmp_path):
    full = extract_mesh(_two_spheres, resolution=32, level=10.0, color=_position_colour, smooth=2, faces=300)
    empty = extract_mesh(lambda p: torch.zeros(len(p)), resolution=16, level=10.0)
    assert len(empty.faces) == 0
    paths = [tmp_path / "full.glb", tmp_path / "empty.glb"]
    for path, mesh in zip(paths, (full, empty), strict=True):
        path.write_bytes(mesh.export(file_type="glb"))
    assert_valid_glb(paths)


def test_the_validator_reports_errors(tmp_path):
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"glTF\x02\x00\x00\x00" + b"\x00" * 12)
    report = validate_glb([broken])[str(broken)]
    assert report["issues"]["numErrors"] > 0


# -- the GLBs that `sample` and `serve` write ---------------------------------------------------
def _sample(capsys, *argv: str):
    from avatar_platform.cli.app import main

    code = main(["sample", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sample_writes_valid_glbs_within_the_face_budget(capsys, tiny_generator, tmp_path):
    import trimesh

    out = tmp_path / "samples"
    common = [
        "--model",
        str(tiny_generator),
        "--seeds",
        "0-1",
        "--views",
        "1",
        "--no-turntable",
        "--mesh",
        "--mesh-resolution",
        "32",
    ]
    code, stdout, err = _sample(
        capsys, *common, "--mesh-level", "auto", "--mesh-faces", "400", "--out", str(out)
    )
    assert code == 0, err
    paths = sorted(out.glob("mesh-seed*.glb"))
    assert [p.name for p in paths] == ["mesh-seed0.glb", "mesh-seed1.glb"]
    assert "early model" in stdout  # random weights: the occupancy fallback, said so
    for path in paths:
        mesh = trimesh.load(path, force="mesh")
        assert 0 < len(mesh.faces) <= 400
        assert len(mesh.split(only_watertight=False)) == 1  # --mesh-keep largest by default
        assert np.abs(mesh.vertices).max() < 0.5 - BORDER_FRACTION + 2 / 31  # off the box
    # every piece, no smoothing, a number as the level
    code, _, err = _sample(
        capsys,
        *common,
        "--mesh-level",
        "1.3",
        "--mesh-keep",
        "all",
        "--mesh-smooth",
        "0",
        "--out",
        str(tmp_path / "all"),
    )
    assert code == 0, err
    every = sorted((tmp_path / "all").glob("mesh-*.glb"))
    assert len(every) == 2
    assert_valid_glb([*paths, *every])


# sample's bad mesh options: with its other bad flags in tests/cli/test_train_and_sample_cli.py


def test_the_cli_default_smoothing_is_the_librarys():
    from avatar_platform.cli.sample import MESH_SMOOTH
    from avatar_platform.pipelines.inference import sampling

    assert MESH_SMOOTH == sampling.MESH_SMOOTH


def test_served_and_registry_meshes_are_valid_glbs(tiny_generator, tmp_path):
    from avatar_platform.pipelines.inference.pyfunc import AvatarRequest, load_model
    from avatar_platform.serve.avatars import render_jobs

    model = load_model(tiny_generator, device="cpu")
    job = AvatarRequest(seed=3, views=1, mesh=True, mesh_resolution=24)
    [[served]] = render_jobs(model, [job])
    assert served.mesh_faces > 0
    import pandas as pd

    frame = pd.DataFrame({"seed": [4], "views": [1], "mesh": [True], "mesh_resolution": [24]})
    rows = model.predict(frame)
    paths = [tmp_path / "served.glb", tmp_path / "registry.glb"]
    paths[0].write_bytes(served.mesh)
    paths[1].write_bytes(rows["mesh_glb"][0])
    assert_valid_glb(paths)
