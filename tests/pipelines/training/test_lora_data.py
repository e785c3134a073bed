"""The pictures of `train lora`: folder reading, captions, crop/resize, augmentation, and every
bad input refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.datagen.tiny_models import write_tiny_pictures
from avatar_platform.pipelines.training.lora.config import LoraAugmentationConfig, LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import augment, find_images, load_training_images


def test_pictures_of_every_format_and_size_become_squares_in_name_order(tmp_path):
    colours = {"b.jpg": (200, 20, 20), "a.png": (20, 200, 20), "c.WEBP": (20, 20, 200)}
    for name, colour in colours.items():
        Image.new("RGB", (90, 40), colour).save(tmp_path / name)
    (tmp_path / "notes.md").write_text("not a picture")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork
    images = load_training_images(tmp_path, "zorb", 32)
    assert [image.path.name for image in images] == ["a.png", "b.jpg", "c.WEBP"]
    for image, colour in zip(images, (colours["a.png"], colours["b.jpg"], colours["c.WEBP"]), strict=True):
        assert image.pixels.shape == (3, 32, 32) and image.pixels.dtype == torch.float32
        mean = ((image.pixels.mean(dim=(1, 2)) + 1) * 127.5).numpy()
        np.testing.assert_allclose(mean, colour, atol=6)  # JPEG and WebP are lossy


def test_the_centre_square_is_kept(tmp_path):
    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, 40:80] = 255  # only the centre square is white
    for i in range(3):
        Image.fromarray(wide).save(tmp_path / f"{i}.png")
    pixels = load_training_images(tmp_path, "zorb", 16)[0].pixels
    assert float(pixels.min()) > 0.9


def test_captions_come_from_txt_files_and_always_name_the_token(tmp_path):
    write_tiny_pictures(tmp_path, count=4)
    (tmp_path / "picture-00.txt").write_text("zorb waving, studio light\n")
    (tmp_path / "picture-01.txt").write_text("a  cartoon\n  fox ")  # no token: it is prepended
    (tmp_path / "picture-02.txt").write_text("   ")  # empty: the default
    captions = [image.caption for image in load_training_images(tmp_path, "zorb", 16)]
    assert captions == [
        "zorb waving, studio light",
        "zorb, a cartoon fox",
        "a picture of zorb",
        "a picture of zorb",
    ]


def test_augmentation_is_seeded_light_and_can_be_off():
    pixels = torch.linspace(-1, 1, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)
    config = LoraAugmentationConfig(hflip=0.5, crop_scale=0.8)
    first = augment(pixels, config, torch.Generator().manual_seed(3))
    again = augment(pixels, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again)
    assert first.shape == pixels.shape and not torch.equal(first, pixels)
    off = LoraAugmentationConfig(hflip=0.0, crop_scale=1.0)
    torch.testing.assert_close(augment(pixels, off, torch.Generator()), pixels)
    flip = LoraAugmentationConfig(hflip=1.0, crop_scale=1.0)
    torch.testing.assert_close(augment(pixels, flip, torch.Generator()), pixels.flip(-1))


def _damaged(folder):
    write_tiny_pictures(folder, count=3)
    data = (folder / "picture-01.png").read_bytes()
    (folder / "picture-01.png").write_bytes(data[: len(data) // 2])


def _not_an_image(folder):
    write_tiny_pictures(folder, count=3)
    (folder / "picture-02.png").write_text("hello")


def _bad_caption(folder):
    write_tiny_pictures(folder, count=3)
    (folder / "picture-00.txt").write_bytes(b"\xff\xfe\xfa caption")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda folder: None, "does not exist"),
        (lambda folder: folder.mkdir(), "holds no pictures (found: nothing)"),
        (
            lambda folder: (folder.mkdir(), (folder / "a.txt").write_text("x")),
            "holds no pictures (found: a.txt)",
        ),
        (
            lambda folder: write_tiny_pictures(folder, count=2),
            "holds 2 picture(s); expected at least 3 pictures",
        ),
        (_damaged, "picture-01.png is damaged or truncated"),
        (_not_an_image, "picture-02.png is not an image"),
        (_bad_caption, "the caption file"),
    ],
    ids=["missing", "empty", "no-pictures", "too-few", "damaged", "not-an-image", "bad-caption"],
)
def test_bad_folders_are_refused_clearly(tmp_path, setup, message):
    folder = tmp_path / "pictures"
    setup(folder)
    with pytest.raises(AvatarPlatformError) as caught:
        load_training_images(folder, "zorb", 16)
    assert message in caught.value.message, caught.value.message


def test_a_file_instead_of_a_folder_is_refused(tmp_path):
    picture = write_tiny_pictures(tmp_path, count=1) / "picture-00.png"
    with pytest.raises(AvatarPlatformError, match="is a file, not a folder"):
        find_images(picture)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"token": "  "}, "'lora.token'"),
        ({"resolution": 60}, "multiple of 8"),
        ({"workers": 3, "batch_size": 4}, "must divide by workers"),
        ({"rank": 0}, "'lora.rank'"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(AvatarPlatformError, match=message):
        resolve_config(LoraTrainingConfig, "lora", "tiny", overrides=overrides)
