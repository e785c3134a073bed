"""The `mask` column: exact procedural masks, condition silhouettes for ControlNet, matting, and
the GAN's decoding of masks (and of datasets written before masks)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from avatar_platform.cli.app import main
from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.dataset_card import format_card, read_card
from avatar_platform.formats.dataset_schema import DATASET_SCHEMA
from avatar_platform.pipelines.datagen.backend import ImageRequest
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.controlnet_backend import (
    ControlNetBackend,
    ControlNetBackendConfig,
    dilate_silhouette,
    silhouette_dilation,
)
from avatar_platform.pipelines.datagen.job import check_inputs, run_generate
from avatar_platform.pipelines.datagen.matting import check_matting_model
from avatar_platform.pipelines.datagen.procedural_backend import (
    ProceduralBackend,
    _edges,
    _hex_to_rgb,
    pixelate,
)
from avatar_platform.pipelines.datagen.spec import plan
from avatar_platform.pipelines.datagen.stages import render_condition_batch, requests_from_batch
from avatar_platform.pipelines.datagen.tiny_models import build_tiny_matting_model
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.poses.conditioning import raycast, render_conditions
from avatar_platform.pipelines.poses.template import template_for
from avatar_platform.pipelines.prompts.prompts import style_catalog
from avatar_platform.pipelines.training.gan.data import (
    dataset_has_masks,
    decode_batch,
    open_dataset,
    ray_dataset,
)

RES = 64
PLANNED_YAW, TRUE_YAW, PITCH = 120.0, 146.0, 10.0  # a pose-noise render: true ≠ planned


def _request(style: str, avatar_seed: int = 2) -> ImageRequest:
    blank = np.zeros((RES, RES, 3), np.uint8)
    return ImageRequest("p", "n", 7, blank, blank, style, avatar_seed, TRUE_YAW, PITCH, {})


def _gbuffer(avatar_seed: int = 2, yaw: float = TRUE_YAW):
    camera = camera_from_angles(yaw, PITCH, CameraConfig())
    return raycast(template_for(avatar_seed), camera, RES)


def _background(style: str) -> np.ndarray:
    """(R, R, 3) float: the style's background ramp as `shade` paints it."""
    colour = _hex_to_rgb(style_catalog()[style].procedural.get("background", "#ffffff"))
    ramp = np.linspace(1.05, 0.9, RES, dtype=np.float32)[:, None, None]
    # float64 like the shaded image (its lighting is float64), for identical rounding
    return np.broadcast_to(np.clip(colour * ramp, 0, 1).astype(np.float64), (RES, RES, 3))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (image * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------- procedural backend


def test_procedural_mask_is_the_gbuffer_foreground_of_the_true_pose():
    image, mask = ProceduralBackend(CameraConfig()).render_masked(_request("pixar"), RES)
    gbuffer = _gbuffer()
    assert mask.shape == (RES, RES) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask == 255, gbuffer.mask)  # pixel for pixel
    # everything outside the mask is exactly the background ramp; the avatar is not
    outside = mask == 0
    expected = _to_uint8(_background("pixar"))
    np.testing.assert_array_equal(image[outside], expected[outside])
    assert (np.abs(image[~outside].astype(int) - expected[~outside]).sum(axis=1) > 0).mean() > 0.95
    # the planned camera's silhouette is another one: the mask follows the render, not the label
    assert (_gbuffer(yaw=PLANNED_YAW).mask != gbuffer.mask).sum() > 20
    # the old entry point still returns the same image
    np.testing.assert_array_equal(ProceduralBackend(CameraConfig()).render(_request("pixar"), RES), image)


def test_outline_pixels_drawn_around_the_figure_belong_to_the_mask():
    assert style_catalog()["anime"].procedural.get("outline")
    image, mask = ProceduralBackend(CameraConfig()).render_masked(_request("anime"), RES)
    gbuffer = _gbuffer()
    fg = mask == 255
    np.testing.assert_array_equal(fg, gbuffer.mask | _edges(gbuffer))
    ring = fg & ~gbuffer.mask  # the contour drawn just outside the G-buffer foreground
    assert ring.any()
    ink = _to_uint8(np.float32(0.08))
    assert (image[ring] == ink).all()
    np.testing.assert_array_equal(image[~fg], _to_uint8(_background("anime"))[~fg])


@pytest.mark.parametrize("style", ["voxel", "pixel-art"])
def test_pixelated_masks_are_the_blockwise_majority_of_the_silhouette(style):
    image, mask = ProceduralBackend(CameraConfig()).render_masked(_request(style), RES)
    gbuffer = _gbuffer()
    block = max(int(style_catalog()[style].procedural["pixelate"] * RES / 512), 2)
    step = RES // max(RES // block, 1)
    cells = RES // step
    inner = cells * step
    coverage = gbuffer.mask[:inner, :inner].reshape(cells, step, cells, step).mean(axis=(1, 3))
    expected = np.repeat(np.repeat(coverage >= 0.5, step, axis=0), step, axis=1)
    np.testing.assert_array_equal(mask[:inner, :inner] == 255, expected)
    # the padded edge repeats the last block, like the image
    np.testing.assert_array_equal(mask[inner:], np.repeat(mask[inner - 1 : inner], RES - inner, 0))
    # blocks with no avatar in them are the (pixelated) background
    empty = np.repeat(np.repeat(coverage == 0, step, axis=0), step, axis=1)
    background = _to_uint8(pixelate(np.ascontiguousarray(_background(style)), block))
    np.testing.assert_array_equal(image[:inner, :inner][empty], background[:inner, :inner][empty])
    assert 0.05 < (mask == 255).mean() < 0.95


# ---------------------------------------------------------------- controlnet backend


def _controlnet_config(tiny_sd, **kwargs) -> GenerateConfig:
    return resolve_config(
        GenerateConfig,
        "generate",
        "tiny",
        overrides={
            "backend": "controlnet",
            "num_images": 4,
            "views_per_avatar": 4,
            "resolution": 32,
            "controlnet": {**tiny_sd, "steps": 2, **kwargs},
        },
    )


def _condition_batch(config: GenerateConfig) -> dict:
    rows = plan(config).to_pylist()
    batch = {key: np.asarray([row[key] for row in rows]) for key in rows[0]}
    batch["camera"] = np.stack([np.asarray(row["camera"], np.float32) for row in rows])
    return render_condition_batch(batch, config.model_dump_json())


@pytest.fixture(scope="module")
def controlnet_batch(tiny_sd):
    config = _controlnet_config(tiny_sd)
    return config, _condition_batch(config)


def test_condition_batch_carries_the_planned_silhouette_to_the_requests(controlnet_batch):
    config, batch = controlnet_batch
    requests = requests_from_batch(batch)
    for i, request in enumerate(requests):
        template = template_for(int(batch["avatar_seed"][i]))
        cond = render_conditions(template, batch["camera"][i], config.resolution)
        np.testing.assert_array_equal(request.mask == 255, cond.mask)
        np.testing.assert_array_equal(request.mask > 0, request.depth[..., 0] > 0)


def test_controlnet_masks_are_the_dilated_condition_silhouette(tiny_sd, controlnet_batch):
    config, batch = controlnet_batch
    backend = ControlNetBackend(ControlNetBackendConfig(**tiny_sd, steps=2, batch_size=2))
    requests = requests_from_batch(batch)
    images, masks = backend.generate_masked(requests, config.resolution)
    assert len(images) == len(masks) == len(requests)
    radius = silhouette_dilation(config.resolution)
    assert radius == 2 and silhouette_dilation(512) == 4
    for request, mask in zip(requests, masks, strict=True):
        silhouette = request.mask > 0
        assert mask.shape == (config.resolution,) * 2 and mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, dilate_silhouette(silhouette, config.resolution))
        fg = mask == 255
        assert (fg >= silhouette).all() and fg.sum() > silhouette.sum()
        # within a (2r+1)² square of the silhouette, and covering its r-step cross
        square = _grow(silhouette, radius, cross=False)
        cross = _grow(silhouette, radius, cross=True)
        assert (fg <= square).all() and (fg >= cross).all()


def _grow(mask: np.ndarray, radius: int, cross: bool) -> np.ndarray:
    out = mask.copy()
    padded = np.pad(mask, radius)
    size = mask.shape[0]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if cross and dx and dy:
                continue
            out |= padded[radius + dy : radius + dy + size, radius + dx : radius + dx + size]
    return out


@pytest.fixture(scope="module")
def tiny_matting(tmp_path_factory) -> str:
    return build_tiny_matting_model(tmp_path_factory.mktemp("tiny-matting") / "segformer")


def test_a_matting_model_refines_the_mask_within_the_silhouette(tiny_sd, tiny_matting, controlnet_batch):
    config, batch = controlnet_batch
    backend = ControlNetBackend(
        ControlNetBackendConfig(**tiny_sd, steps=2, batch_size=2, matting_model=tiny_matting)
    )
    requests = requests_from_batch(batch)
    images, masks = backend.generate_masked(requests, config.resolution)
    changed = 0
    for request, mask in zip(requests, masks, strict=True):
        dilated = dilate_silhouette(request.mask, config.resolution) == 255
        assert set(np.unique(mask)) <= {0, 255}
        assert ((mask == 255) <= dilated).all()  # the model only trims the silhouette band
        changed += int(((mask == 255) != dilated).sum())
    assert changed > 0
    # the same images, with and without matting: it touches only the masks
    plain = ControlNetBackend(ControlNetBackendConfig(**tiny_sd, steps=2, batch_size=2))
    for a, b in zip(plain.generate(requests, config.resolution), images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_folder_that_is_no_segmentation_model_is_refused_before_any_work(
    tiny_sd, tiny_sd_flags, tiny_matting, tmp_path, cli
):
    assert check_matting_model(tiny_matting) == str(Path(tiny_matting).resolve())
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model")
    for folder, why in [
        (junk, "no config.json"),
        (Path(tiny_sd["openpose_controlnet"]), "names no transformers model_type"),
        (Path(tiny_sd["sd_model"]) / "text_encoder", "'clip_text_model' is not a semantic"),
    ]:
        with pytest.raises(AvatarPlatformError, match=f"the matting model .*({why})"):
            check_inputs(_controlnet_config(tiny_sd, matting_model=str(folder)))
    # through the CLI: one error line, no dataset folder
    out = tmp_path / "ds"
    code, _, err = cli(
        "generate --preset tiny --backend controlnet", tiny_sd_flags, "--matting-model", junk, "--out", out
    )
    assert code != 0 and "matting model" in err and "no config.json" in err
    assert not out.exists()
    # the procedural backend's masks are exact: a matting model there is a mistake
    procedural = resolve_config(
        GenerateConfig, "generate", "tiny", overrides={"controlnet": {"matting_model": tiny_matting}}
    )
    with pytest.raises(AvatarPlatformError, match="--backend controlnet, or drop --matting-model"):
        check_inputs(procedural)


# ---------------------------------------------------------------- the dataset and the GAN


@pytest.fixture(scope="module")
def masked_dataset(ray_session, tmp_path_factory):
    config = resolve_config(
        GenerateConfig,
        "generate",
        "tiny",
        overrides={
            "num_images": 8,
            "styles": ["pixar", "voxel"],
            "resolution": 32,
            "procedural": {"pose_noise": 1.0},
        },
    )
    out = tmp_path_factory.mktemp("masked") / "ds"
    run_generate(config, out)
    return config, out


def test_every_shard_has_l_mode_png_masks_matching_the_true_pose(masked_dataset):
    config, out = masked_dataset
    card = read_card(out)
    assert card["masks"]["source"] == "procedural-gbuffer"
    assert "masks        procedural-gbuffer" in format_card(out, card)
    backend = ProceduralBackend(config.camera)
    avatar_seed = {row["sample_id"]: row["avatar_seed"] for row in plan(config).to_pylist()}
    perturbed = 0
    for shard in card["shards"]:
        table = pq.read_table(out / shard["file"])
        assert table.schema.equals(DATASET_SCHEMA) and table.schema.names[-1] == "mask"
        for row in table.to_pylist():
            mask = Image.open(io.BytesIO(row["mask"]))
            assert mask.format == "PNG" and mask.mode == "L" and mask.size == (32, 32)
            request = ImageRequest(
                "p",
                "n",
                row["seed"],
                None,
                None,
                row["style"],
                avatar_seed[row["sample_id"]],
                row["true_yaw"],
                row["true_pitch"],
                json.loads(row["attributes"]),
            )
            image, expected = backend.render_masked(request, 32)
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(row["image"]))), image)
            np.testing.assert_array_equal(np.asarray(mask), expected)
            perturbed += abs(row["true_yaw"] - row["yaw"]) > 1.0
    assert perturbed  # some masks follow a true pose that is not the planned camera


def test_gan_data_decodes_masks_with_their_images(masked_dataset):
    _, out = masked_dataset
    card, files = open_dataset(out, 16, 4)
    assert dataset_has_masks(card, files)
    table = pq.read_table(files[0])
    rows = {c: table[c].to_pylist() for c in table.column_names}
    for resolution in (32, 16):
        decoded = decode_batch(rows, resolution)
        n = table.num_rows
        assert decoded["image"].shape == (n, 3, resolution, resolution)
        assert decoded["mask"].shape == (n, 1, resolution, resolution)
        assert decoded["mask"].dtype == np.uint8 and set(np.unique(decoded["mask"])) <= {0, 255}
    full = decode_batch(rows, 32)["mask"][:, 0]
    stored = np.stack([np.asarray(Image.open(io.BytesIO(m))) for m in rows["mask"]])
    np.testing.assert_array_equal(full, stored)
    ds = ray_dataset(files, 16, card["num_images"], masks=True)
    batch = next(iter(ds.iter_batches(batch_size=4, batch_format="numpy")))
    assert batch["mask"].shape == (4, 1, 16, 16) and batch["image"].shape == (4, 3, 16, 16)
    assert "mask" not in next(iter(ray_dataset(files, 16, 8).iter_batches(batch_size=4)))


def test_a_dataset_written_before_masks_still_loads_without_masks(masked_dataset, tmp_path, capsys):
    _, out = masked_dataset
    old = tmp_path / "old"
    (old / "data").mkdir(parents=True)
    card = read_card(out)
    for shard in card["shards"]:
        table = pq.read_table(out / shard["file"])
        pq.write_table(table.drop_columns(["mask"]), old / shard["file"])
    card.pop("masks")
    (old / "dataset.json").write_text(json.dumps(card))
    card, files = open_dataset(old, 16, 4)
    assert not dataset_has_masks(card, files)
    table = pq.read_table(files[0])
    decoded = decode_batch({c: table[c].to_pylist() for c in table.column_names}, 16)
    assert "mask" not in decoded and decoded["image"].shape[1:] == (3, 16, 16)
    batch = next(iter(ray_dataset(files, 16, card["num_images"]).iter_batches(batch_size=4)))
    assert set(batch) == {"image", "yaw", "pitch", "camera"}
    assert main(["dataset", "info", str(old)]) == 0
    assert "masks        none (written before masks; mask-aware training is off)" in (capsys.readouterr().out)
    # a card that promises masks its shards lack is an error, not a silent mask-free run
    card["masks"] = {"source": "procedural-gbuffer"}
    with pytest.raises(AvatarPlatformError, match="has no 'mask' column"):
        dataset_has_masks(card, files)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_damaged_or_mis_sized_masks_are_one_clear_error():
    image = _png(np.zeros((32, 32, 3), np.uint8))
    good = _png(np.full((32, 32), 255, np.uint8))

    def batch(*masks):
        n = len(masks)
        return {
            "image": [image] * n,
            "yaw": [0.0] * n,
            "pitch": [0.0] * n,
            "camera": [np.zeros(25, np.float32)] * n,
            "mask": list(masks),
        }

    assert decode_batch(batch(good, good), 16)["mask"].shape == (2, 1, 16, 16)
    assert "mask" not in decode_batch(batch(b"", b""), 16)  # a column without data: no masks
    for masks, why in [
        ((b"garbage", good), "not a PNG"),
        ((good[:40], good), "cannot be decoded"),
        ((_png(np.zeros((16, 16), np.uint8)), good), "16x16, its image 32x32"),
        ((_png(np.zeros((32, 32, 3), np.uint8)), good), "mode RGB"),
        ((good, b""), "1 of 2 rows have none"),
    ]:
        with pytest.raises(AvatarPlatformError, match=f"a mask in the dataset is damaged: .*{why}"):
            decode_batch(batch(*masks), 16)


def test_schema_lists_the_mask_column_last():
    assert DATASET_SCHEMA.field("mask").type == pa.binary()
    assert DATASET_SCHEMA.names[-1] == "mask"
