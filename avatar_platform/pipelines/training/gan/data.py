"""The GAN's view of a generated dataset: validation, and a Ray Dataset of decoded images.

Rows → image (3, R, R) uint8 (the trainer scales it to [-1, 1]), yaw and pitch (degrees) and
camera (25,) as float32; with masks (a dataset that has them, read with `masks=True`) also
mask (1, R, R) uint8, 255 = the avatar's foreground, 0 = background.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.dataset_schema import MASK_COLUMN, REQUIRED_COLUMNS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def open_dataset(folder: Path, img_resolution: int, batch_size: int) -> tuple[dict, list[str]]:
    """The card and shard paths of a dataset the GAN can train on, or one clear error."""
    from avatar_platform.formats.dataset_card import read_card

    folder = Path(folder)
    card = read_card(folder)
    files = [str(folder / shard["file"]) for shard in card.get("shards", [])]
    if not files:
        raise AvatarPlatformError(f"the dataset '{folder}' lists no shards")
    for path in files:
        if not Path(path).is_file():
            raise AvatarPlatformError(
                f"shard '{path}' of the dataset card is missing",
                fix="regenerate the dataset or restore the file",
            )
    names = set(pq.read_schema(files[0]).names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise AvatarPlatformError(
            f"the dataset '{folder}' has the wrong schema (missing columns {missing})",
            expected=f"the columns {', '.join(REQUIRED_COLUMNS)} written by avatar-platform generate",
            fix="regenerate the dataset with this version of avatar-platform",
        )
    if card["resolution"] < img_resolution:
        raise AvatarPlatformError(
            f"the dataset's images are {card['resolution']}² but the preset's generator makes {img_resolution}²",
            expected=f"a dataset of at least {img_resolution}² images",
            fix=f"generate with --resolution {img_resolution} or pick a smaller preset",
        )
    if card["num_images"] < batch_size:
        raise AvatarPlatformError(
            f"the dataset holds {card['num_images']} images, fewer than one batch ({batch_size})",
            fix="generate more images or lower gan.batch_size",
        )
    return card, files


def dataset_has_masks(card: dict, files: list[str]) -> bool:
    """Whether the dataset's shards carry masks: the card names their source and every shard has
    the column. A dataset written before masks has neither (False); a card that promises masks a
    shard lacks is one clear error."""
    masks = card.get("masks")
    if not masks or not masks.get("source"):
        return False
    lacking = [path for path in files if MASK_COLUMN not in pq.read_schema(path).names]
    if lacking:
        raise AvatarPlatformError(
            f"the dataset card lists masks ({masks['source']}) but shard '{lacking[0]}' has no '{MASK_COLUMN}' column",
            fix="regenerate the dataset or restore the shard",
        )
    return True


def _damaged_mask(why: str) -> AvatarPlatformError:
    return AvatarPlatformError(
        f"a mask in the dataset is damaged: {why}",
        expected="a 1-channel PNG (mode L) of the image's size in the 'mask' column",
        fix="regenerate the dataset (or train without masks)",
    )


def decode_mask(data: bytes, image_size: tuple[int, int], resolution: int) -> np.ndarray:
    """PNG bytes → (1, R, R) uint8 mask, 0 or 255, resized with its image (bilinear, then
    thresholded at half: a pixel is foreground when at least half of what it covers is)."""
    from PIL import Image, UnidentifiedImageError

    if not bytes(data[:8]) == PNG_SIGNATURE:
        raise _damaged_mask("it is not a PNG")
    try:
        mask = Image.open(io.BytesIO(data))
        mask.load()
    except (OSError, ValueError, UnidentifiedImageError) as err:
        raise _damaged_mask(f"it cannot be decoded ({err})") from None
    if mask.mode != "L":
        raise _damaged_mask(f"it has mode {mask.mode}, not L (one channel)")
    if mask.size != image_size:
        raise _damaged_mask(f"it is {mask.size[0]}x{mask.size[1]}, its image {image_size[0]}x{image_size[1]}")
    if mask.size != (resolution, resolution):
        mask = mask.resize((resolution, resolution), Image.Resampling.BILINEAR)
    return np.where(np.asarray(mask, np.uint8) >= 128, 255, 0).astype(np.uint8)[None]


def decode_batch(batch: dict, resolution: int) -> dict:
    """PNG bytes → image (B, 3, R, R) uint8 (a quarter of float32 in the object store); yaw,
    pitch (B,) and camera (B, 25) float32. The trainer scales images to [-1, 1].

    When the batch has a `mask` column with data: also mask (B, 1, R, R) uint8 (255 = avatar,
    0 = background; `decode_mask`). A column of empty values means no masks (no `mask` key); a
    damaged mask, or one of another size than its image, is one clear error.
    """
    from PIL import Image

    raw_masks = [m if m is not None else b"" for m in batch.get(MASK_COLUMN, ())]
    with_masks = sum(len(m) > 0 for m in raw_masks)
    if with_masks and with_masks != len(raw_masks):
        raise _damaged_mask(f"{len(raw_masks) - with_masks} of {len(raw_masks)} rows have none")
    images, masks = [], []
    for i, data in enumerate(batch["image"]):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if with_masks:
            masks.append(decode_mask(raw_masks[i], image.size, resolution))
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
        images.append(np.asarray(image, np.uint8).transpose(2, 0, 1))
    out = {
        "image": np.stack(images),
        "yaw": np.asarray(batch["yaw"], np.float32),
        "pitch": np.asarray(batch["pitch"], np.float32),
        "camera": np.stack([np.asarray(c, np.float32) for c in batch["camera"]]),
    }
    if with_masks:
        out[MASK_COLUMN] = np.stack(masks)
    return out


MATERIALIZE_BYTES = 1 << 30  # decoded datasets up to this size are decoded once, not per epoch
SHUFFLE_BYTES = 256 << 20  # a worker's shuffle buffer holds up to this many bytes of decoded rows


def shuffle_rows(num_images: int, resolution: int, masks: bool, workers: int, batch: int) -> int:
    """Rows in a worker's shuffle buffer: its whole shard when that fits in SHUFFLE_BYTES, else
    as many rows as do (at least 4 batches). A dataset is written avatar by avatar, all views of
    one avatar in a row: with a buffer of a few batches, each batch held a handful of avatars,
    and D's minibatch-stddev saw reals far less diverse than fakes."""
    row_bytes = (3 + masks) * resolution * resolution
    shard = -(-num_images // workers)
    return max(min(shard, SHUFFLE_BYTES // row_bytes), 4 * batch)


def ray_dataset(files: list[str], resolution: int, num_images: int, masks: bool = False):
    """A Ray Dataset of decoded training rows (decoding runs in Ray tasks, not in the workers);
    `masks=True` (for a dataset where `dataset_has_masks`) adds the `mask` column.

    A small dataset is decoded once and kept in the object store (otherwise every epoch would
    start new read and decode tasks); a large one streams from Parquet each epoch.
    """
    import ray

    columns = ["image", "yaw", "pitch", "camera"] + ([MASK_COLUMN] if masks else [])
    ds = ray.data.read_parquet(files, columns=columns).map_batches(
        decode_batch, fn_kwargs={"resolution": resolution}, batch_size=64
    )
    if num_images * (3 + masks) * resolution * resolution <= MATERIALIZE_BYTES:
        return ds.materialize()
    return ds.randomize_block_order()  # a large dataset: each epoch reads its blocks in another order
