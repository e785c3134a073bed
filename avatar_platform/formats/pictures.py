"""A user's picture (a face or character to turn into a 3D avatar), checked and made RGB.

Shared by `avatar-platform sample --image`, the MLflow pyfunc model and the serve API, so that
every entry point refuses the same bad uploads with the same one-line error.
"""

from __future__ import annotations

import io
import stat
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avatar_platform.core.errors import AvatarPlatformError

if TYPE_CHECKING:
    import torch

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 16

# Only plugins for ordinary pictures: PIL would otherwise also open EPS (which runs Ghostscript
# on load), PSD, ICO and dozens more that an upload has no reason to be. "JPEG" covers MPO too.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED = "a PNG, JPEG or WebP image (BMP, GIF and TIFF also work)"

# Decoders fail in many ways on a damaged file; all of them mean "the file is broken".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, zlib.error)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_image(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> Image.Image:
    """Open, check and convert a user image → RGB PIL image (8-bit).

    `source` is a path or the uploaded bytes; `name` is what errors call it (default: the path,
    or "the uploaded image"). Every problem raises AvatarPlatformError.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "the uploaded image"
        data = bytes(source)
        _check_bytes(len(data), max_bytes, label)
    elif isinstance(source, str | Path):
        path = Path(source)
        label = name or str(path)
        data = _read_file(path, max_bytes, label)
    else:
        raise TypeError(f"load_image takes a path or bytes, not {type(source).__name__}")
    if not data:
        raise AvatarPlatformError(
            f"{label} is an empty file (0 bytes), not an image",
            expected=ACCEPTED,
            fix="upload the picture again; the file has no content",
        )

    size: tuple[int, int] | None = None
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        size = image.size
        _check_header(image, label, max_pixels, min_side)
        # PIL decodes lazily: without load() a truncated file would only fail much later.
        # LOAD_TRUNCATED_IMAGES is left as it is (False) so that truncation raises here.
        image.load()
        image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL's own bomb check (in open() and when seeking frames); the warning only gets here
        # when a caller's warning filters turn it into an error, and it means the same thing.
        _refuse_bomb(label, size, max_pixels)
    except UnidentifiedImageError:
        raise AvatarPlatformError(
            f"{label} is not an image (or not in a supported format)",
            expected=ACCEPTED,
            fix="save or export the picture as PNG or JPEG and use that file",
        ) from None
    except _DECODE_ERRORS as exc:
        raise _damaged(label, exc) from None
    return _to_rgb(image)


def image_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """RGB PIL → (3, size, size) float32 in [-1, 1]: centre-crop to a square, then resize (LANCZOS)."""
    import torch

    if image.mode != "RGB":
        raise ValueError(f"image_tensor needs an RGB image (from load_image), got {image.mode}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # Crop first, then resize: resizing with a box would let the filter reach past the crop.
    square = image.crop((left, top, left + side, top + side))
    square = square.resize((size, size), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.array(square, dtype=np.uint8)).permute(2, 0, 1)
    return pixels.to(torch.float32).div(127.5).sub(1.0).contiguous()


def _read_file(path: Path, max_bytes: int, label: str) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AvatarPlatformError(
            f"{label} does not exist",
            expected="the path of an image file (PNG, JPEG or WebP)",
            fix="check the path for typos; relative paths start from the current folder",
        ) from None
    except OSError as exc:
        raise _unreadable(label, exc) from None
    if stat.S_ISDIR(info.st_mode):
        raise AvatarPlatformError(
            f"{label} is a folder, not an image file",
            expected="the path of one image file",
            fix="pass one picture inside the folder, e.g. a .png or .jpg in it",
        )
    if not stat.S_ISREG(info.st_mode):
        raise AvatarPlatformError(
            f"{label} is not a regular file",
            expected="the path of an image file",
            fix="save the picture to a file and pass that path",
        )
    # Refuse from the size on disk, before reading a byte of a huge file.
    _check_bytes(info.st_size, max_bytes, label)
    try:
        with path.open("rb") as file:
            # One byte over the limit is enough to tell that the file grew since stat().
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise _unreadable(label, exc) from None
    _check_bytes(len(data), max_bytes, label)
    return data


def _check_header(image: Image.Image, label: str, max_pixels: int, min_side: int) -> None:
    """Refusals decided from the header alone, before a single pixel is decoded."""
    width, height = image.size
    if width * height > max_pixels:
        _refuse_bomb(label, image.size, max_pixels)
    if min(width, height) < min_side:
        raise AvatarPlatformError(
            f"{label} is {width}x{height} pixels, too small to show a face",
            expected=f"an image at least {min_side} pixels on each side (256 or more works best)",
            fix="use a larger picture, not a thumbnail or an icon",
        )
    frames = getattr(image, "n_frames", 1)
    # MPO is how phones write JPEGs: the extra frames are previews or depth maps, not animation.
    if frames > 1 and image.format != "MPO":
        raise AvatarPlatformError(
            f"{label} is animated ({frames} frames)",
            expected="a single still image",
            fix="pass a single frame: export the frame you want as PNG or JPEG",
        )


def _check_bytes(size: int, max_bytes: int, label: str) -> None:
    if size > max_bytes:
        raise AvatarPlatformError(
            f"{label} is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit",
            expected=f"an image file of at most {_megabytes(max_bytes)}",
            fix="downscale the picture or save it as JPEG (quality 90 is plenty)",
        )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _refuse_bomb(label: str, size: tuple[int, int] | None, max_pixels: int) -> NoReturn:
    dimensions, limit = "", f"{max_pixels / 1e6:g}"
    if size:
        pixels = size[0] * size[1]
        # as many decimals as it takes for the two numbers to differ (16.004 vs 16.000, not
        # "16 megapixels, at most 16"); pixel counts are whole, so 6 always do
        digits = next(d for d in range(7) if f"{pixels / 1e6:.{d}f}" != f"{max_pixels / 1e6:.{d}f}")
        dimensions = f" ({size[0]}x{size[1]} = {pixels / 1e6:.{digits}f} megapixels)"
        limit = f"{max_pixels / 1e6:.{digits}f}"
    raise AvatarPlatformError(
        f"{label} has too many pixels{dimensions}",
        expected=f"an image of at most {limit} megapixels",
        fix="downscale it first, e.g. to 1024 pixels on the long side",
    )


def _damaged(label: str, exc: BaseException) -> AvatarPlatformError:
    return AvatarPlatformError(
        f"{label} is damaged or truncated and could not be decoded ({exc})",
        expected="a complete image file",
        fix="upload or download the picture again, or re-export it as PNG or JPEG",
    )


def _unreadable(label: str, exc: OSError) -> AvatarPlatformError:
    return AvatarPlatformError(
        f"{label} could not be read ({exc.strerror or exc})",
        expected="an image file this user can read",
        fix="check the file's permissions",
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _grey_to_8bit(image)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Dropping alpha would show whatever colour the transparent pixels happen to hold
        # (often black, a hard edge around a cut-out); white is what image viewers show.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    if image.mode == "F" and peak <= 1.0:
        values = values * 255.0
    elif image.mode.startswith("I;16") or peak > 255.0:
        # 16-bit data: 65535 / 257 = 255 exactly; clipping to 255 would turn most pixels white.
        values = np.clip(values, 0.0, 65535.0) / 257.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
