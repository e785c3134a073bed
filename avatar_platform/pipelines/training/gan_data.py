"""The GAN's view of a generated dataset: validation, and a Ray Dataset of decoded images.

Rows → image (3, R, R) float32 in [-1, 1], yaw and pitch (degrees), camera (25,).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from avatar_platform.core.errors import AvatarPlatformError

REQUIRED_COLUMNS = ("image", "yaw", "pitch", "camera", "width", "height", "view_bin")


def open_dataset(folder: Path, img_resolution: int, batch_size: int) -> tuple[dict, list[str]]:
    """The card and shard paths of a dataset the GAN can train on, or one clear error."""
    from avatar_platform.pipelines.datagen.card import read_card

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
            f"the dataset's images are {card['resolution']}² but the preset's generator makes "
            f"{img_resolution}²",
            expected=f"a dataset of at least {img_resolution}² images",
            fix=f"generate with --resolution {img_resolution} or pick a smaller preset",
        )
    if card["num_images"] < batch_size:
        raise AvatarPlatformError(
            f"the dataset holds {card['num_images']} images, fewer than one batch ({batch_size})",
            fix="generate more images or lower gan.batch_size",
        )
    return card, files


def decode_batch(batch: dict, resolution: int) -> dict:
    """PNG bytes → (B, 3, R, R) uint8 (a quarter of float32 in the object store); labels as
    float32. The trainer scales images to [-1, 1]."""
    from PIL import Image

    images = []
    for data in batch["image"]:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if image.size != (resolution, resolution):
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
        images.append(np.asarray(image, np.uint8).transpose(2, 0, 1))
    return {
        "image": np.stack(images),
        "yaw": np.asarray(batch["yaw"], np.float32),
        "pitch": np.asarray(batch["pitch"], np.float32),
        "camera": np.stack([np.asarray(c, np.float32) for c in batch["camera"]]),
    }


MATERIALIZE_BYTES = 1 << 30  # decoded datasets up to this size are decoded once, not per epoch


def ray_dataset(files: list[str], resolution: int, num_images: int):
    """A Ray Dataset of decoded training rows (decoding runs in Ray tasks, not in the workers).

    A small dataset is decoded once and kept in the object store (otherwise every epoch would
    start new read and decode tasks); a large one streams from Parquet each epoch.
    """
    import ray

    ds = ray.data.read_parquet(files, columns=["image", "yaw", "pitch", "camera"]).map_batches(
        decode_batch, fn_kwargs={"resolution": resolution}, batch_size=64
    )
    if num_images * 3 * resolution * resolution <= MATERIALIZE_BYTES:
        ds = ds.materialize()
    return ds
