"""Picture → a faithful avatar (issue #16): projection, camera estimation, pivotal tuning, the
refined model folder, and the `sample --refine/--tune` command (tiny random-weight models)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import load_generator
from avatar_platform.pipelines.inference import refine as R
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.rendering import cameras, ws_for_seed


@pytest.fixture(scope="module")
def generator(tiny_generator):
    return load_generator(tiny_generator)


def _target(generator, seed=3, yaw=0.0, pitch=0.0) -> torch.Tensor:
    """A picture the generator can make: seed `seed` seen from (yaw, pitch)."""
    with torch.no_grad():
        ws = ws_for_seed(generator, seed, 1.0)
        return generator.synthesis(ws, cameras([yaw], pitch))["image"]


def _loss(generator, ws, target, yaw=0.0, pitch=0.0) -> float:
    features = R.PerceptualFeatures()
    with torch.no_grad():
        image = generator.synthesis(ws, cameras([yaw], pitch))["image"]
    return R.reconstruction_loss(image, target, features)[1]["loss"]


@pytest.mark.parametrize(("yaw", "pitch"), [(0.0, 0.0), (35.0, -10.0), (-80.0, 20.0)])
def test_the_torch_camera_is_the_dataset_camera(yaw, pitch):
    camera = R.camera_from_angles_torch(torch.tensor(yaw), torch.tensor(pitch), CameraConfig())
    expected = torch.from_numpy(camera_from_angles(yaw, pitch, CameraConfig()))[None]
    torch.testing.assert_close(camera, expected, atol=1e-5, rtol=0)


def test_projection_lowers_the_reconstruction_loss(generator):
    target = _target(generator)
    start = generator.mapping.w_avg.reshape(1, 1, -1).expand(1, generator.mapping.num_ws, -1)
    features = R.PerceptualFeatures()
    ws, yaw, pitch, losses = R.project(generator, target, start, 40, features)
    assert (yaw, pitch) == (0.0, 0.0)  # the frontal camera unless asked to fit it
    assert ws.shape == start.shape and torch.allclose(ws[:, 0], ws[:, -1])  # one w, broadcast
    assert _loss(generator, ws, target) < 0.8 * _loss(generator, start, target)
    assert [r["step"] for r in losses] == list(range(1, 41))
    assert all(p.requires_grad for p in generator.parameters())  # left as it was found


def test_w_plus_and_the_camera_are_fitted_when_asked(generator):
    target = _target(generator, yaw=25.0)
    start = generator.mapping.w_avg.reshape(1, 1, -1).expand(1, generator.mapping.num_ws, -1)
    features = R.PerceptualFeatures()
    ws, yaw, pitch, losses = R.project(generator, target, start, 30, features, w_plus=True, fit_camera=True)
    assert not torch.allclose(ws[:, 0], ws[:, -1])  # every layer its own w
    assert (yaw, pitch) != (0.0, 0.0) and -90 <= yaw <= 90 and -30 <= pitch <= 30
    assert losses[-1]["loss"] < losses[0]["loss"]


def test_tuning_changes_only_the_tuned_copy(generator, tiny_generator):
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tiny_generator.iterdir()}
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    target = _target(generator, seed=5)
    ws = ws_for_seed(generator, 1, 1.0)
    features = R.PerceptualFeatures()
    tuned, losses = R.pivotal_tune(generator, target, ws, 0.0, 0.0, 25, features)
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tiny_generator.iterdir()} == files
    assert tuned is not generator
    assert _loss(tuned, ws, target) < _loss(generator, ws, target)  # the pivot renders the picture better
    assert all("locality" in r for r in losses)  # PTI's regulariser ran
    torch.testing.assert_close(
        tuned.mapping.state_dict(), generator.mapping.state_dict()
    )  # only what renders a w is tuned


def test_a_bare_gan_starts_from_the_mean_w_and_says_so(generator):
    result = R.refine(generator, _target(generator), None, 5, 0)
    assert result.start.startswith("mean w") and not result.tuned and result.generator is generator
    assert "random-cnn" in result.features  # no VGG16 weights here: the fallback is named


def test_the_best_diffusion_candidate_is_the_start(generator):
    target = _target(generator, seed=7)
    candidates = torch.cat([ws_for_seed(generator, s, 1.0) for s in (2, 7, 9)])  # 7 is the picture
    result = R.refine(generator, target, candidates, 0, 0)
    assert result.start.startswith("style diffusion, candidate 1 of 3")
    torch.testing.assert_close(result.ws, candidates[1:2])


@pytest.mark.parametrize(
    ("refine", "tune"), [(-1, 0), (0, -2), (R.MAX_REFINE_STEPS + 1, 0), (0, R.MAX_TUNE_STEPS + 1)]
)
def test_step_counts_out_of_range_are_one_error(refine, tune):
    with pytest.raises(AvatarPlatformError, match="out of range"):
        R.check_steps(refine, tune)


def test_the_refined_folder_loads_as_a_model_with_its_pivot(generator, tmp_path):
    target = _target(generator)
    result = R.refine(generator, target, ws_for_seed(generator, 1, 1.0), 3, 2)
    picture = Image.new("RGB", (8, 8), "red")
    folder = R.save_refined(result, tmp_path / "refined", source="x", picture_hash=R.picture_sha256(picture))
    loaded = load_generator(folder)
    torch.testing.assert_close(R.load_pivot(folder), result.ws)
    for a, b in zip(loaded.state_dict().values(), result.generator.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    card = (folder / R.AVATAR_CARD).read_text()
    assert R.picture_sha256(picture) in card and '"tune_steps": 2' in card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refined"]


def test_sample_refine_writes_a_model_folder_a_loss_curve_and_before_after(cli, tiny_diffusion, tmp_path):
    picture = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(picture)
    out = tmp_path / "out"
    argv = ["sample", "--model", str(tiny_diffusion), "--image", str(picture), "--num-samples", "2"]
    argv += ["--views", "3", "--frames", "2", "--refine", "6", "--tune", "3", "--out", str(out)]
    code, stdout, err = cli(argv)
    assert code == 0, err
    assert "refine   start: style diffusion" in stdout and "random-cnn" in stdout
    sheet = np.asarray(Image.open(out / "refine-before-after.png"))
    assert sheet.shape == (2 * 32, 4 * 32, 3)  # rows before/after; the input + 3 views
    assert Image.open(out / "refine-loss.png").size == (480, 240)
    assert (out / "turntable-refined.gif").is_file() and (out / "refine-losses.json").is_file()
    again = tmp_path / "again"
    code, stdout, err = cli("sample --model", out / "refined", "--views 2 --frames 2 --out", again)
    assert code == 0, err
    assert "rows: pivot" in stdout and np.asarray(Image.open(again / "views.png")).shape == (32, 64, 3)


def test_refine_on_a_bare_gan_starts_from_the_mean_w(cli, tiny_generator, tmp_path):
    picture = tmp_path / "face.png"
    Image.new("RGB", (32, 32), "white").save(picture)
    argv = ["sample", "--model", str(tiny_generator), "--image", str(picture), "--refine", "2"]
    code, stdout, err = cli(argv, "--no-turntable --out", tmp_path / "out")
    assert code == 0, err
    assert "no style diffusion: the projection starts from the mean w" in stdout
    assert (tmp_path / "out" / "refined" / R.PIVOT_FILE).is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--refine", "-1"], "--refine -1 is out of range"),
        (["--tune", str(R.MAX_TUNE_STEPS + 1)], "out of range"),
        (["--refine", "5", "--no-image"], "no --image was given"),
    ],
)
def test_bad_refine_input_is_one_error_and_writes_nothing(cli, tiny_diffusion, tmp_path, extra, message):
    picture = tmp_path / "face.png"
    Image.new("RGB", (32, 32), "white").save(picture)
    out = tmp_path / "out"
    argv = ["sample", "--model", str(tiny_diffusion), "--out", str(out)]
    if "--no-image" in extra:
        extra = [e for e in extra if e != "--no-image"]
    else:
        argv += ["--image", str(picture)]
    code, _, err = cli(argv, extra)
    assert code == 2 and message in err and err.startswith("error:"), err
    assert not out.exists()


def test_the_pyfunc_model_refines_a_picture_row_into_one_avatar(tiny_diffusion):
    import io

    import pandas as pd

    from avatar_platform.pipelines.inference.pyfunc import load_model

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(
        buffer, format="PNG"
    )
    model = load_model(tiny_diffusion, device="cpu")
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    frame = pd.DataFrame(
        {"image": [buffer.getvalue()], "num_samples": [3], "views": [2], "refine": [4], "tune": [2]}
    )
    out = model.predict(frame)
    assert list(out["sample"]) == [0] and Image.open(io.BytesIO(out["views_png"][0])).size == (64, 32)
    assert all(
        torch.equal(v, before[k]) for k, v in model.generator.state_dict().items()
    )  # served model untouched
    with pytest.raises(AvatarPlatformError, match="refine/tune without an image"):
        model.predict(pd.DataFrame({"seed": [1], "refine": [3]}))
    with pytest.raises(AvatarPlatformError, match="refine between 0 and"):
        model.predict(frame.assign(refine=R.MAX_REFINE_STEPS + 1))
