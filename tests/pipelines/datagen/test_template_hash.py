"""A user template mesh is part of the dataset's identity (issue #10, D8 and D9): its files' sha256
go into the config hash (so an edited mesh is not resumed into the old folder) and into the card;
a mesh that does not fit the cameras fails before anything is written."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.dataset_card import write_card
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.job import _prepare, config_hash, run_generate
from avatar_platform.pipelines.poses.template import BustParams, build_bust


def write_bust(folder, scale: float = 1.0, nose_dz: float = 0.0):
    """The default built-in bust as bust.ply + bust.landmarks.json, scaled by `scale`."""
    bust = build_bust(BustParams())
    mesh = bust.mesh.copy()
    mesh.apply_scale(scale)
    path = folder / "bust.ply"
    mesh.export(path)
    marks = {k: (np.asarray(v) * scale).tolist() for k, v in bust.landmarks.items()}
    marks["nose"][2] += nose_dz
    (folder / "bust.landmarks.json").write_text(json.dumps(marks))
    return path


def edit_mesh(path):
    """Re-export the mesh with its head moved a little (still a valid template)."""
    import trimesh

    mesh = trimesh.load(path, force="mesh")
    mesh.apply_translation([0.0, 0.01, 0.0])
    mesh.export(path)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config(mesh_path, **extra) -> GenerateConfig:
    return GenerateConfig(
        num_images=4, views_per_avatar=4, resolution=32, template_mesh=str(mesh_path), **extra
    )


def test_editing_the_mesh_or_its_landmarks_changes_the_config_hash(tmp_path):
    mesh_path = write_bust(tmp_path)
    config = _config(mesh_path)
    before = config_hash(config)
    assert config_hash(config) == before  # stable for the same files
    edit_mesh(mesh_path)
    after_mesh = config_hash(config)
    assert after_mesh != before
    write_bust(tmp_path, nose_dz=0.001)  # the landmarks change (and the mesh back)
    assert config_hash(config) not in (before, after_mesh)


def test_the_explicit_landmarks_file_is_hashed(tmp_path):
    mesh_path = write_bust(tmp_path)
    other = tmp_path / "other.json"
    other.write_text((tmp_path / "bust.landmarks.json").read_text())
    config = _config(mesh_path, template_landmarks=str(other))
    before = config_hash(config)
    marks = json.loads(other.read_text())
    marks["nose"][2] += 0.001
    other.write_text(json.dumps(marks))
    assert config_hash(config) != before


def test_resuming_after_editing_the_mesh_is_refused(tmp_path):
    mesh_path = write_bust(tmp_path)
    config = _config(mesh_path)
    out = tmp_path / "ds"
    _prepare(config, out)  # an interrupted run: the spec written, no images yet
    edit_mesh(mesh_path)
    with pytest.raises(AvatarPlatformError, match="unfinished dataset made with another config"):
        run_generate(config, out)


def test_the_card_records_the_template_files_hashes(tmp_path):
    mesh_path = write_bust(tmp_path)
    config = _config(mesh_path)
    card = write_card(tmp_path, config, config_hash(config), [], {"backend": "procedural"})
    template = json.loads((tmp_path / "dataset.json").read_text())["template"]
    assert template == card["template"]
    assert template["mesh"] == {"file": str(mesh_path), "sha256": sha256(mesh_path)}
    landmarks = tmp_path / "bust.landmarks.json"
    assert template["landmarks"] == {"file": str(landmarks), "sha256": sha256(landmarks)}


def test_a_card_without_a_template_mesh_has_no_template_entry(tmp_path):
    card = write_card(tmp_path, GenerateConfig(), "x", [], {"backend": "procedural"})
    assert card["template"] is None


# --- the CLI ----------------------------------------------------------------------------------


def test_the_default_out_folder_follows_the_mesh_content(cli, tmp_path):
    mesh_path = write_bust(tmp_path)
    argv = ("generate", "--preset", "tiny", "--template-mesh", str(mesh_path), "--dry-run")
    code, out, _ = cli(argv)
    assert code == 0
    first = json.loads(out)["out"]
    edit_mesh(mesh_path)
    code, out, _ = cli(argv)
    assert code == 0 and json.loads(out)["out"] != first


@pytest.mark.parametrize(("scale", "message"), [(100.0, "too large"), (0.01, "too small")])
def test_a_mesh_in_other_units_fails_before_anything_is_written(cli, tmp_path, scale, message):
    mesh_path = write_bust(tmp_path, scale=scale)
    out_dir = tmp_path / "ds"
    code, _, err = cli(
        "generate --preset tiny --template-mesh", mesh_path, "--out", out_dir, "--no-track --no-preview"
    )
    assert code == 2, err
    assert message in err and "--template-normalize" in err and "Traceback" not in err
    assert not out_dir.exists() and not (out_dir / "dataset.json").exists()


def test_template_normalize_prints_what_it_did(cli, tmp_path):
    mesh_path = write_bust(tmp_path, scale=100.0)
    code, out, err = cli(
        "generate --preset tiny --template-mesh", mesh_path, "--template-normalize --dry-run"
    )
    assert code == 0, err
    assert json.loads(out)["generate"]["template_normalize"] is True
    assert "scaled by 0.01" in err and "offset" in err
