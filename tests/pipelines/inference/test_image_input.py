"""A user's picture (formats/pictures.py): every bad upload refused clearly, every good one made RGB."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.pictures import MAX_BYTES, image_tensor, load_image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """Random RGB pixels: they do not compress, so any cut lands in the pixel data."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def blank_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size, written by hand: a few hundred KB even for
    400 megapixels, and nothing is ever held in memory at full size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    compressor = zlib.compressobj(1)
    rows = bytes(1 + (width + 7) // 8) * 1000  # filter byte 0, then zero bits
    data = [compressor.compress(rows) for _ in range(height // 1000)]
    data.append(compressor.compress(bytes(1 + (width + 7) // 8) * (height % 1000)))
    data.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Records every pixel decode (ImageFile.load), to prove a refusal came from the header."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def load(self):
        calls.append(self.format)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


# --- refused -------------------------------------------------------------------------------------


def test_missing_file_is_refused_and_named(tmp_path):
    path = tmp_path / "no-such-face.png"
    with pytest.raises(AvatarPlatformError, match="does not exist") as error:
        load_image(path)
    assert "no-such-face.png" in str(error.value)


def test_folder_is_refused(tmp_path):
    with pytest.raises(AvatarPlatformError, match="is a folder"):
        load_image(tmp_path)


def test_file_over_the_byte_limit_is_refused_from_its_size_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: costs no disk and no time

    def no_reading(*args, **kwargs):
        raise AssertionError("the file was opened for reading")

    monkeypatch.setattr(Path, "open", no_reading)
    with pytest.raises(AvatarPlatformError, match="over the 20.0 MB limit"):
        load_image(path)


def test_bytes_over_the_byte_limit_are_refused():
    data = encoded(noise(), "PNG")
    with pytest.raises(AvatarPlatformError, match="over the .* limit") as error:
        load_image(data, max_bytes=len(data) - 1)
    assert "the uploaded image" in str(error.value)


@pytest.mark.parametrize(
    "content",
    [b"name,age\nada,36\n", np.random.default_rng(1).bytes(4096), b"%PDF-1.4\n%fake\n"],
    ids=["text", "random-bytes", "pdf"],
)
def test_something_that_is_not_an_image_is_refused(tmp_path, content):
    path = tmp_path / "face.png"
    path.write_bytes(content)
    with pytest.raises(AvatarPlatformError, match="not an image") as error:
        load_image(path)
    assert "PNG, JPEG or WebP" in error.value.expected


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "face.jpg"
    path.write_bytes(b"")
    with pytest.raises(AvatarPlatformError, match="empty file"):
        load_image(path)


def test_format_pil_opens_but_an_upload_has_no_reason_to_be_is_refused():
    with pytest.raises(AvatarPlatformError, match="not in a supported format") as error:
        load_image(encoded(noise(), "PPM"))
    assert "PNG, JPEG or WebP" in error.value.expected


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_truncated_image_is_refused_when_decoded(format):
    data = encoded(noise(), format)
    cut = data[: len(data) * 6 // 10]
    assert Image.open(io.BytesIO(cut)).size == (64, 64)  # the header alone looks fine
    with pytest.raises(AvatarPlatformError, match="damaged or truncated"):
        load_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("size", [(1, 1), (10, 200), (200, 15)])
def test_image_with_a_side_under_min_side_is_refused(size):
    with pytest.raises(AvatarPlatformError, match="too small"):
        load_image(encoded(Image.new("RGB", size), "PNG"))


def test_min_side_can_be_raised():
    data = encoded(Image.new("RGB", (64, 64)), "PNG")
    assert load_image(data).size == (64, 64)
    with pytest.raises(AvatarPlatformError, match="64x64 pixels, too small"):
        load_image(data, min_side=128)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (8_000, 6_000),  # 48 MP: over MAX_PIXELS, under PIL's own limit: our header check
        (20_000, 20_000),  # 400 MP: PIL's DecompressionBombError inside Image.open
    ],
)
def test_decompression_bomb_is_refused_from_the_header_without_decoding(decodes, width, height):
    bomb = blank_png(width, height)
    assert len(bomb) < 1024 * 1024
    start = time.perf_counter()
    with pytest.raises(AvatarPlatformError, match="too many pixels"):
        load_image(bomb)
    assert time.perf_counter() - start < 1.0
    assert decodes == []
    load_image(encoded(Image.new("RGB", (32, 32)), "PNG"))
    assert decodes  # the spy does see decodes


def test_pil_bomb_warning_turned_error_is_refused_too(decodes):
    # 100 MP sits between PIL's warning and error limits; some services turn warnings into errors
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(AvatarPlatformError, match="too many pixels"):
            load_image(blank_png(10_000, 10_000), max_pixels=200_000_000)
    assert decodes == []


def test_max_pixels_can_be_lowered(decodes):
    # the two numbers differ in the message (it said "0 megapixels … at most 0" before)
    with pytest.raises(AvatarPlatformError, match=r"64x64 = 0\.0041 megapixels\).*at most 0\.0040"):
        load_image(encoded(Image.new("RGB", (64, 64)), "PNG"), max_pixels=4_000)
    assert decodes == []


def two_frames(mode: str = "RGB") -> list[Image.Image]:
    return [Image.new(mode, (32, 32), RED), Image.new(mode, (32, 32), BLUE)]


@pytest.mark.parametrize("format", ["GIF", "PNG", "WEBP"], ids=["gif", "apng", "webp"])
def test_animated_image_is_refused_with_single_frame_advice(format):
    first, second = two_frames()
    data = encoded(first, format, save_all=True, append_images=[second])
    with pytest.raises(AvatarPlatformError, match="animated \\(2 frames\\)") as error:
        load_image(data)
    assert "single frame" in error.value.fix


def test_one_frame_gif_is_accepted():
    image = load_image(encoded(Image.new("RGB", (32, 32), RED), "GIF"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == RED


def test_phone_jpeg_with_extra_frames_mpo_is_not_animated():
    first, second = two_frames()
    image = load_image(encoded(first, "MPO", save_all=True, append_images=[second]))
    assert image.size == (32, 32)
    assert np.allclose(image.getpixel((16, 16)), RED, atol=8)


# --- accepted and converted ----------------------------------------------------------------------


def test_rgb_png_path_and_bytes_give_the_same_image(tmp_path):
    source = noise((40, 30))
    path = save(source, tmp_path / "face.png")
    from_path = load_image(path)
    from_bytes = load_image(path.read_bytes(), name="face.png")
    assert from_path.mode == from_bytes.mode == "RGB"
    assert np.array_equal(np.asarray(from_path), np.asarray(source))
    assert np.array_equal(np.asarray(from_path), np.asarray(from_bytes))


def test_name_labels_errors_of_bytes():
    with pytest.raises(AvatarPlatformError, match="^selfie.jpg is not an image"):
        load_image(b"not a picture at all", name="selfie.jpg")


@pytest.mark.parametrize("format", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb_with_plausible_colour(format):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # full magenta + yellow = red
    image = load_image(encoded(cmyk, format))
    assert image.mode == "RGB"
    r, g, b = image.getpixel((16, 16))
    assert r > 220 and g < 40 and b < 40


def test_grey_becomes_rgb_with_equal_channels():
    image = load_image(encoded(Image.new("L", (32, 32), 77), "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (77, 77, 77)


def test_palette_becomes_rgb_with_its_colours():
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    palette.paste(0, (0, 0, 16, 32))
    image = load_image(encoded(palette, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert image.getpixel((31, 0)) == (10, 200, 30)


def rgba_with_transparent_corner() -> Image.Image:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 16, 16))  # fully transparent black
    image.paste((0, 0, 0, 128), (16, 0, 32, 16))  # half transparent black
    return image


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white_not_black(mode):
    image = load_image(encoded(rgba_with_transparent_corner().convert(mode), "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == WHITE
    assert all(120 <= channel <= 135 for channel in image.getpixel((20, 4)))  # composited
    assert image.getpixel((8, 24)) == (0, 0, 0)


def test_palette_transparency_becomes_white():
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    palette.paste(0, (0, 0, 16, 32))
    image = load_image(encoded(palette, "GIF", transparency=0))
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((31, 0)) == BLUE


@pytest.mark.parametrize(("mode", "format"), [("I;16", "PNG"), ("I", "TIFF")])
def test_sixteen_bit_grey_is_scaled_to_eight_bits(mode, format):
    values = np.zeros((32, 32), dtype=np.uint16)
    values[:, 8:16], values[:, 16:24], values[:, 24:] = 32768, 65535, 1000
    sixteen = Image.fromarray(values)
    data = encoded(sixteen if mode == "I;16" else sixteen.convert("I"), format)
    assert Image.open(io.BytesIO(data)).mode == mode
    pixels = np.asarray(load_image(data))
    assert pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert tuple(pixels[0, 8]) == (128, 128, 128)
    assert tuple(pixels[0, 16]) == (255, 255, 255)
    assert tuple(pixels[0, 24]) == (4, 4, 4)  # 1000 / 257, not clipped to 255


def test_exif_orientation_is_applied():
    landscape = Image.new("RGB", (40, 20), BLUE)
    landscape.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to show
    image = load_image(encoded(landscape, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (20, 40)
    assert np.allclose(image.getpixel((10, 5)), RED, atol=24)  # the left half is now on top
    assert np.allclose(image.getpixel((10, 35)), BLUE, atol=24)


@pytest.mark.parametrize("format", ["WEBP", "BMP"])
def test_other_common_formats_are_accepted(format):
    image = load_image(encoded(Image.new("RGB", (32, 32), RED), format, lossless=True))
    assert image.mode == "RGB" and image.size == (32, 32)


# --- image_tensor --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 64])
def test_image_tensor_centre_crops_a_wide_image_to_its_middle(size):
    wide = Image.new("RGB", (40, 20), BLUE)
    wide.paste(RED, (10, 0, 30, 20))  # the middle square is red, both sides blue
    tensor = image_tensor(wide, size)
    assert tensor.shape == (3, size, size) and tensor.dtype == torch.float32
    assert torch.allclose(tensor[0], torch.ones(size, size))
    assert torch.allclose(tensor[2], -torch.ones(size, size))


def test_image_tensor_centre_crops_a_tall_image_and_spans_minus_one_to_one():
    tall = Image.fromarray(np.random.default_rng(2).integers(0, 256, (41, 20, 3), dtype=np.uint8))
    tall.paste(WHITE, (0, 0, 20, 10))  # above the 20x20 middle: cropped away
    tall.paste((0, 0, 0), (0, 10, 20, 31))
    tensor = image_tensor(tall, 16)
    assert tensor.shape == (3, 16, 16)
    assert torch.equal(tensor, -torch.ones(3, 16, 16))
    assert image_tensor(Image.new("RGB", (20, 20), WHITE), 16).eq(1.0).all()
    values = image_tensor(noise((50, 30)), 24)
    assert values.min() >= -1.0 and values.max() <= 1.0


def test_image_tensor_wants_rgb():
    with pytest.raises(ValueError, match="RGB"):
        image_tensor(Image.new("RGBA", (20, 20)), 8)
