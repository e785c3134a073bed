"""The `styleavatar3d` pyfunc on a local package folder: renders and meshes per row, bad rows."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import trimesh
from PIL import Image

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import resolve_model_folder, resolve_package_folder
from avatar_platform.pipelines.inference import pyfunc

RESOLUTION = 32  # the tiny preset's images (conftest's `tiny_generator`)


@pytest.fixture(scope="module")
def model(tiny_generator):
    return pyfunc._load_pyfunc(str(tiny_generator))


@pytest.fixture(scope="module")
def diffusion_folder(tmp_path_factory, tiny_generator):
    """The layout `train diffusion` writes, with only the marker files the loader looks at."""
    folder = tmp_path_factory.mktemp("diffusion") / "model"
    (folder / "generator").mkdir(parents=True)
    for file in tiny_generator.iterdir():
        (folder / "generator" / file.name).write_bytes(file.read_bytes())
    (folder / "style_denoiser.json").write_text(json.dumps({"format_version": 1}))
    (folder / "image_encoder.json").write_text(json.dumps({"format_version": 1}))
    return folder


def _png(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 120, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_seeds_give_a_view_strip_and_a_mesh_per_row(model):
    out = model.predict(
        pd.DataFrame({"seed": [0, 1], "views": [3, 3], "mesh": [True, True], "mesh_resolution": [24, 24]})
    )
    assert list(out.columns) == ["request", "sample", "views_png", "mesh_glb"]
    assert out["request"].tolist() == [0, 1] and out["sample"].tolist() == [0, 0]
    for png, glb in zip(out["views_png"], out["mesh_glb"], strict=True):
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == (3 * RESOLUTION, RESOLUTION)
        mesh = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
        assert len(mesh.faces) > 0
    assert out["views_png"][0] != out["views_png"][1]  # two seeds, two avatars


def test_defaults_and_the_same_seed_gives_the_same_avatar(model):
    first = model.predict(pd.DataFrame({"seed": [7]}))
    second = model.predict(pd.DataFrame({"seed": [7]}))
    assert first["views_png"][0] == second["views_png"][0]
    assert Image.open(io.BytesIO(first["views_png"][0])).size == (4 * RESOLUTION, RESOLUTION)
    assert first["mesh_glb"][0] == b""  # no mesh unless asked


def test_front_view_comes_first(model):
    from avatar_platform.pipelines.inference import sampling

    out = model.predict(pd.DataFrame({"seed": [3], "views": [2], "truncation": [0.5]}))
    strip = np.asarray(Image.open(io.BytesIO(out["views_png"][0])))
    ws = sampling.ws_for_seed(model.generator, 3, 0.5)
    front = sampling.render(model.generator, ws, [sampling.FRONT])[0]
    np.testing.assert_array_equal(strip[:, :RESOLUTION], front)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"seed": [0], "image": [_png()]}, "row 0 has both a seed and an image"),
        ({"seed": [None]}, "row 0 has no seed and no image"),
        ({"seed": [-1]}, "row 0: seed is -1"),
        ({"seed": [1.5]}, "expected an integer"),
        ({"seed": ["a"]}, "row 0: seed is 'a'"),
        ({"seed": [0, 1], "views": [4, 65]}, "row 1: views is 65; expected views between 1 and 64"),
        ({"seed": [0], "views": [0]}, "views between 1 and 64"),
        ({"seed": [0], "mesh_resolution": [8]}, "mesh_resolution between 16 and 256"),
        ({"seed": [0], "mesh_resolution": [512]}, "mesh_resolution between 16 and 256"),
        ({"seed": [0], "truncation": [1.5]}, "truncation between 0.0 and 1.0"),
        ({"seed": [0], "mesh": ["yes"]}, "expected true or false"),
        ({"image": ["not bytes"]}, "row 0: image is a str"),
        ({"views": [4]}, "no seed and no image"),
    ],
)
def test_bad_rows_are_one_clear_error(model, frame, message):
    with pytest.raises(AvatarPlatformError) as caught:
        model.predict(pd.DataFrame(frame))
    assert message in caught.value.message


def test_an_empty_request_is_refused(model):
    with pytest.raises(AvatarPlatformError, match="no rows"):
        model.predict(pd.DataFrame({"seed": []}))


def test_an_image_on_a_generator_only_package_is_refused(model):
    frame = pd.DataFrame({"seed": [0, None], "image": [None, _png()]})
    with pytest.raises(AvatarPlatformError, match="no image conditioning") as caught:
        model.predict(frame)
    assert "generator-only" in caught.value.message


def test_a_diffusion_package_samples_seeds_from_its_generator(diffusion_folder, tiny_generator):
    assert resolve_package_folder(diffusion_folder.parent) == diffusion_folder
    assert resolve_model_folder(diffusion_folder) == diffusion_folder / "generator"
    loaded = pyfunc._load_pyfunc(str(diffusion_folder))
    assert loaded.has_image_conditioning and loaded.folder == diffusion_folder
    plain = pyfunc._load_pyfunc(str(tiny_generator))
    frame = pd.DataFrame({"seed": [2], "views": [1]})
    assert loaded.predict(frame)["views_png"][0] == plain.predict(frame)["views_png"][0]


def test_a_diffusion_folder_without_its_generator_is_one_clear_error(tmp_path):
    (tmp_path / "style_denoiser.json").write_text("{}")
    with pytest.raises(AvatarPlatformError, match="has no generator"):
        resolve_model_folder(tmp_path)


def test_signature_names_every_column():
    signature = pyfunc.signature()
    inputs = {spec.name: spec for spec in signature.inputs.inputs}
    assert set(inputs) == {
        "seed",
        "image",
        "views",
        "truncation",
        "mesh",
        "mesh_resolution",
        "num_samples",
        "guidance",
        "refine",
        "tune",
    }
    assert not any(spec.required for spec in inputs.values())
    assert signature.outputs.input_names() == ["request", "sample", "views_png", "mesh_glb"]
