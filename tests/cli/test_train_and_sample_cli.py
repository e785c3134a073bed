"""`train gan` and `sample` as a user meets them: outputs to look at, and bad input."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trimesh
from PIL import Image

from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.trainer import GanTrainer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    GanTrainer(resolve_config(GanTrainingConfig, "gan", "tiny")).save(folder)
    return folder


def _fake_dataset(
    folder, resolution=32, columns=("image", "yaw", "pitch", "camera", "width", "height", "view_bin"), rows=8
):
    (folder / "data").mkdir(parents=True)
    data = {name: [0] * rows for name in columns}
    pq.write_table(pa.table(data), folder / "data" / "part-0.parquet")
    card = {
        "resolution": resolution,
        "num_images": rows,
        "shards": [{"file": "data/part-0.parquet", "rows": rows, "sha256": ""}],
    }
    (folder / "dataset.json").write_text(json.dumps(card))
    return folder


def _sample(cli, out, *args) -> tuple[str, np.ndarray]:
    """`sample ARGS --out OUT`, which must succeed: its stdout and the views.png it wrote."""
    code, stdout, err = cli("sample", *args, "--out", out)
    assert code == 0, err
    return stdout, np.asarray(Image.open(out / "views.png"))


def test_sample_writes_views_turntable_walk_and_a_mesh(cli, tiny_model, tmp_path):
    out = tmp_path / "samples"
    stdout, views = _sample(
        cli,
        out,
        "--model",
        tiny_model,
        "--seeds 0-1 --views 3 --frames 4 --walk 0,1 --mesh --mesh-resolution 24 --mesh-level auto --mesh-format ply",
    )
    assert views.shape == (2 * 32, 3 * 32, 3)
    gif = Image.open(out / "turntable-seed0.gif")
    assert gif.n_frames == 4
    assert Image.open(out / "walk-0-1-w.gif").n_frames == 4
    mesh = trimesh.load(out / "mesh-seed0.ply")
    assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape[0] == len(mesh.vertices)
    assert np.abs(mesh.vertices).max() <= 0.5 + 1e-6  # inside the tri-plane box
    assert "mesh     " in stdout
    preview = np.asarray(Image.open(out / "mesh-seed0.png"))  # the mesh rendered from 5 yaws
    assert preview.shape == (256, 5 * 256, 3)
    assert (preview < 250).any(axis=-1).mean() > 0.001  # something besides the white background


def test_same_seed_same_views(cli, tiny_model, tmp_path):
    args = ("--model", tiny_model, "--seeds 5 --no-turntable")
    a, b = (_sample(cli, tmp_path / name, *args)[1] for name in ("a", "b"))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "3-1"], "cannot read seeds"),
        (["--seeds", "-1"], "cannot read seeds"),
        (["--seeds", "a,b"], "cannot read seeds"),
        (["--walk", "1"], "--walk takes two seeds"),
        (["--mesh-format", "stl"], "expected glb, ply or obj"),
        (["--mesh-level", "high"], "expected a number or 'auto'"),
        (["--mesh", "--mesh-faces", "0"], "--mesh-faces 0"),
        (["--mesh", "--mesh-faces", "-5"], "expected a face budget >= 1"),
        (["--mesh", "--mesh-keep", "biggest"], "expected largest or all"),
        (["--mesh", "--mesh-smooth", "-1"], "expected iterations >= 0"),
    ],
)
def test_sample_bad_flags(cli, tiny_model, tmp_path, args, message):
    out = tmp_path / "samples"
    code, _, err = cli("sample --model", tiny_model, "--out", out, args)
    assert code == 2 and message in err, err
    assert err.count("error") == 1 and "Traceback" not in err
    assert not out.exists()


def test_sample_bad_models(cli, tiny_model, tmp_path):
    code, _, err = cli("sample --model", tmp_path / "none")
    assert code == 2 and "is not a model" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in tiny_model.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / "generator_ema.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = cli("sample --model", broken)
    assert code == 2 and "cannot read the weights" in err


def test_train_dry_run_resolves_steps_from_kimg(cli, tmp_path):
    code, out, _ = cli(
        "train gan --data", tmp_path, "--preset tiny --kimg 0.1 --discriminator fine --dry-run"
    )
    resolved = json.loads(out)["gan"]
    assert code == 0 and resolved["steps"] == 25  # 100 images / batch 4
    assert resolved["discriminator"]["conditioning"]["mode"] == "fine"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", [], "does not exist"),
        ("empty", [], "not a complete dataset"),
        ("schema", [], "wrong schema (missing columns ['camera'"),
        ("small", ["--preset", "demo"], "dataset's images are 32² but the preset's generator makes 64²"),
        ("ok", ["--steps", "0"], "'gan.steps'"),
        ("ok", ["--discriminator", "exact"], "'gan.discriminator.conditioning.mode'"),
        ("ok", ["--batch-size", "64"], "fewer than one batch"),
    ],
)
def test_train_bad_input(cli, tmp_path, setup, args, message):
    data = tmp_path / "ds"
    if setup == "empty":
        data.mkdir()
    elif setup == "schema":
        _fake_dataset(data, columns=("image", "yaw", "pitch", "width", "height", "view_bin"))
    elif setup in ("small", "ok"):
        _fake_dataset(data)
    out = tmp_path / "run"
    code, _, err = cli("train gan --data", data, "--preset tiny --out", out, "--no-track", args)
    assert code == 2 and message in err, err
    assert not (out / "model").exists()


def test_sample_from_an_image_writes_views_turntables_and_meshes(cli, tiny_diffusion, tmp_path):
    picture = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(picture)
    out = tmp_path / "samples"
    stdout, views = _sample(
        cli,
        out,
        "--model",
        tiny_diffusion,
        "--image",
        picture,
        "--num-samples 2 --views 3 --frames 3 --mesh --mesh-resolution 24 --mesh-level auto",
    )
    assert views.shape == (2 * 32, 3 * 32, 3)  # one row per sample, no seed rows
    assert not np.array_equal(views[:32], views[32:])
    assert Image.open(out / "turntable-image-sample1.gif").n_frames == 3
    assert (out / "input.png").is_file() and (out / "mesh-image-sample0.glb").is_file()
    assert "rows: image-sample0, image-sample1" in stdout


def test_sample_an_image_with_a_generator_only_model_is_one_error(cli, tiny_model, tmp_path):
    picture = tmp_path / "face.png"
    Image.new("RGB", (32, 32), "white").save(picture)
    code, _, err = cli("sample --model", tiny_model, "--image", picture, "--out", tmp_path / "out")
    assert code == 2 and "no style diffusion" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not an image"), "not an image"),
        (lambda p: p.write_bytes(_png(64)[:80]), "truncated"),
        (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "too small"),
        (lambda p: Image.new("CMYK", (40, 40)).save(p, format="JPEG"), None),  # accepted
    ],
)
def test_sample_bad_pictures_fail_before_anything_is_written(cli, tiny_diffusion, tmp_path, make, message):
    picture = tmp_path / "face.png"
    make(picture)
    out = tmp_path / "out"
    code, _, err = cli(
        "sample --model",
        tiny_diffusion,
        "--image",
        picture,
        "--num-samples 1 --views 1 --no-turntable --out",
        out,
    )
    if message is None:
        assert code == 0, err
        return
    assert code == 2 and message in err and err.startswith("error:")
    assert not out.exists()


def _png(size: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (size, size, 3), np.uint8)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def test_train_diffusion_dry_run_and_bad_generator(cli, tmp_path):
    code, out, _ = cli(
        "train diffusion --generator",
        tmp_path,
        "--preset tiny --encoder clip --clip-model /models/clip --dry-run",
    )
    resolved = json.loads(out)["diffusion"]
    assert code == 0 and resolved["encoder"] == {
        **resolved["encoder"],
        "kind": "clip",
        "clip_model": "/models/clip",
    }
    code, _, err = cli(
        "train diffusion --generator",
        tmp_path / "none",
        "--preset tiny --out",
        tmp_path / "run",
        "--no-track",
    )
    assert code == 2 and "is not a model" in err and not (tmp_path / "run").exists()
    code, _, err = cli("train diffusion --generator", tmp_path, "--preset tiny --encoder vit")
    assert code == 2 and "encoder.kind" in err


def test_gpus_required_on_a_cpu_only_cluster_fails_within_its_bound(cli, ray_session, tmp_path):
    data, out = _fake_dataset(tmp_path / "ds"), tmp_path / "run"
    args = ["--data", str(data), "--preset", "tiny", "--out", str(out), "--no-track"]
    started = time.monotonic()
    code, _, err = cli("train gan", args, "--gpus required --gpu-wait 2")
    waited = time.monotonic() - started
    assert code == 2 and "need 1 GPUs (--gpus required) but the Ray cluster has 0 after waiting 2 s" in err, (
        err
    )
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--gpus auto" in errors[0]
    assert 2.0 <= waited < 30.0  # it waited its bound, then stopped: no CPU fallback
    assert not (out / "model").exists()
    # a procedural dataset has no GPU work: required is refused before anything is planned
    code, _, err = cli("generate --preset tiny --out", tmp_path / "g", "--gpus required")
    assert code == 2 and "the procedural backend renders on CPUs" in err
    assert not (tmp_path / "g" / "_work").exists()
