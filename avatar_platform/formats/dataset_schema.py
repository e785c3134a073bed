"""The rows of a generated dataset: the Parquet schema every part file has (`generate` writes
it, the GAN and the benchmarks read it) and the columns the GAN needs. The card that lists the
parts is `dataset_card`'s."""

from __future__ import annotations

import pyarrow as pa

PART_PREFIX = "part-"  # data/part-<first index>-<hash of its ids>.parquet

DATASET_SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("avatar_id", pa.string()),
        ("style", pa.string()),
        ("prompt", pa.string()),
        ("negative_prompt", pa.string()),
        ("seed", pa.int64()),
        ("yaw", pa.float32()),
        ("pitch", pa.float32()),
        ("view_bin", pa.int32()),
        ("camera", pa.list_(pa.float32(), 25)),
        ("image", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("backend", pa.string()),
        # beyond the dataset contract (docs/architecture.md): what the image was made from
        ("attributes", pa.string()),
        ("true_yaw", pa.float32()),
        ("true_pitch", pa.float32()),
        ("openpose_image", pa.binary()),
        ("depth_image", pa.binary()),
        # the image's foreground: 1-channel PNG (mode "L"), 255 = avatar, 0 = background, the
        # image's size; how it was made is the card's "masks.source"
        ("mask", pa.binary()),
    ]
)

# what the GAN reads (a dataset without one of them cannot be trained on)
REQUIRED_COLUMNS = ("image", "yaw", "pitch", "camera", "width", "height", "view_bin")
MASK_COLUMN = "mask"
