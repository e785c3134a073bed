"""The pictures of one character for `train lora`: a folder of JPEG/PNG/WebP files, each checked by
`load_image`, centre-cropped and resized to the training resolution, captioned from a `.txt` file
beside it (else "a picture of <token>"), and lightly augmented per step from a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from avatar_platform.core.errors import AvatarPlatformError, read_user_file
from avatar_platform.formats.pictures import image_tensor, load_image
from avatar_platform.pipelines.training.lora.config import LoraAugmentationConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MIN_IMAGES = 3
DEFAULT_CAPTION = "a picture of {token}"


@dataclass(frozen=True)
class TrainingImage:
    path: Path
    caption: str
    pixels: torch.Tensor  # (3, R, R) float32 in [-1, 1]


def default_caption(token: str) -> str:
    return DEFAULT_CAPTION.format(token=token)


def find_images(folder: str | Path) -> list[Path]:
    """The picture files of `folder` in name order (not recursive); errors for a missing or empty
    folder and for fewer than MIN_IMAGES pictures."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AvatarPlatformError(
            f"the training pictures folder '{folder}' "
            + ("is a file, not a folder" if folder.exists() else "does not exist"),
            expected="a folder of JPEG, PNG or WebP pictures of the character",
            fix="pass --images with the folder that holds the pictures",
        )
    # macOS leaves "._name.jpg" resource forks beside copied pictures; they are not images
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        others = ", ".join(p.name for p in paths[:5]) or "nothing"
        raise AvatarPlatformError(
            f"the training pictures folder '{folder}' holds no pictures (found: {others})",
            expected=f"{MIN_IMAGES} or more .jpg, .jpeg, .png or .webp files",
            fix="put pictures of the character in the folder (10 or so work best)",
        )
    if len(images) < MIN_IMAGES:
        raise AvatarPlatformError(
            f"the training pictures folder '{folder}' holds {len(images)} picture(s)",
            expected=f"at least {MIN_IMAGES} pictures of the character (10 or so work best)",
            fix="add more pictures of the character, from several views if you have them",
        )
    return images


def read_caption(image: Path, token: str) -> str:
    """The caption of `image`: its `.txt` twin (stem.txt) or the default; the token is put in
    front of a caption that does not name it, since the token is what the adapter learns."""
    text_file = image.with_suffix(".txt")
    caption = ""
    if text_file.is_file():
        text = read_user_file(
            text_file,
            "the caption file",
            expected="a UTF-8 text file with one caption",
            fix="save the caption as UTF-8 text, or delete the file to use the default",
        )
        caption = " ".join(text.split())
    if not caption:
        return default_caption(token)
    return caption if token in caption else f"{token}, {caption}"


def load_training_images(folder: str | Path, token: str, resolution: int) -> list[TrainingImage]:
    """Every picture of `folder` checked, captioned and made (3, resolution, resolution)."""
    return [
        TrainingImage(path, read_caption(path, token), image_tensor(load_image(path), resolution))
        for path in find_images(folder)
    ]


def augment(pixels: torch.Tensor, config: LoraAugmentationConfig, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, R, R) → (B, 3, R, R): a random square crop (side ≥ crop_scale·R) resized back, and
    a horizontal flip with probability hflip; every draw comes from `generator` (CPU)."""
    side = pixels.shape[-1]
    out = []
    for image in pixels:
        share = float(torch.rand(1, generator=generator))
        scale = config.crop_scale + (1 - config.crop_scale) * share
        crop = max(round(side * scale), 1)
        top, left = (int(torch.randint(0, side - crop + 1, (1,), generator=generator)) for _ in range(2))
        if crop < side:
            image = image[:, top : top + crop, left : left + crop]
            image = F.interpolate(
                image[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False
            )[0]
        if float(torch.rand(1, generator=generator)) < config.hflip:
            image = image.flip(-1)
        out.append(image)
    return torch.stack(out)
