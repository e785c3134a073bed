"""The Ray Data stages of the generate job as plain, picklable functions and callable classes.

conditioning renders (CPU tasks) → images (actor pool, GPU when there) → PNG + Parquet part files.
Nothing here starts Ray; `job.py` wires these into a Dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from avatar_platform.core.paths import atomic_write_bytes
from avatar_platform.formats.dataset_schema import DATASET_SCHEMA, PART_PREFIX
from avatar_platform.pipelines.datagen.backend import ImageRequest, mask_from_bool
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.poses.conditioning import render_conditions
from avatar_platform.pipelines.poses.template import template_for


def render_condition_batch(batch: dict[str, np.ndarray], config_json: str) -> dict:
    """Add `openpose` and `depth` (B, R, R, 3) uint8 columns, rendered at the planned cameras,
    and `condition_mask` (B, R, R) uint8, the template's silhouette there (255 = foreground)."""
    config = GenerateConfig.model_validate_json(config_json)
    openpose, depth, silhouette = [], [], []
    for avatar_seed, camera in zip(batch["avatar_seed"], batch["camera"], strict=True):
        template = template_for(
            int(avatar_seed), config.template_mesh, config.template_landmarks, config.template_normalize
        )
        images = render_conditions(template, np.asarray(camera), config.resolution)
        openpose.append(images.openpose)
        depth.append(images.depth)
        silhouette.append(mask_from_bool(images.mask))
    return {
        **batch,
        "openpose": np.stack(openpose),
        "depth": np.stack(depth),
        "condition_mask": np.stack(silhouette),
    }


def make_backend(config: GenerateConfig, device: str | None = None):
    """The configured image backend (heavy imports happen here, inside the worker)."""
    if config.backend == "procedural":
        from avatar_platform.pipelines.datagen.procedural_backend import ProceduralBackend

        return ProceduralBackend(
            config.camera, config.template_mesh, config.template_landmarks, config.template_normalize
        )
    from avatar_platform.pipelines.datagen.controlnet_backend import ControlNetBackend

    return ControlNetBackend(config.controlnet, device=device)


def requests_from_batch(batch: dict[str, np.ndarray]) -> list[ImageRequest]:
    return [
        ImageRequest(
            prompt=str(batch["prompt"][i]),
            negative_prompt=str(batch["negative_prompt"][i]),
            seed=int(batch["seed"][i]),
            openpose=batch["openpose"][i],
            depth=batch["depth"][i],
            style=str(batch["style"][i]),
            avatar_seed=int(batch["avatar_seed"][i]),
            render_yaw=float(batch["true_yaw"][i]),
            render_pitch=float(batch["true_pitch"][i]),
            attributes=json.loads(str(batch["attributes"][i])),
            mask=batch["condition_mask"][i] if "condition_mask" in batch else None,
        )
        for i in range(len(batch["sample_id"]))
    ]


class ImageGenerator:
    """Actor: loads the backend once, then turns batches of requests into `image` and `mask`
    columns ((B, R, R, 3) and (B, R, R) uint8)."""

    def __init__(self, config_json: str, cpu_threads: int = 1):
        self.config = GenerateConfig.model_validate_json(config_json)
        if self.config.backend == "controlnet":
            import torch

            if not torch.cuda.is_available():
                # several actors share the cores; each must not claim all of them
                torch.set_num_threads(max(cpu_threads, 1))
        self.backend = make_backend(self.config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict:
        images, masks = self.backend.generate_masked(requests_from_batch(batch), self.config.resolution)
        return {**batch, "image": np.stack(images), "mask": np.stack(masks)}


def encode_png(image: np.ndarray) -> bytes:
    """PNG of an (R, R, 3) uint8 image (RGB) or an (R, R) uint8 mask (mode "L")."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def part_name(indices: np.ndarray, sample_ids: list[str]) -> str:
    """Deterministic in the rows it holds: a retried task rewrites the same file, never a twin."""
    digest = hashlib.sha256("\n".join(sorted(sample_ids)).encode()).hexdigest()[:10]
    return f"{PART_PREFIX}{int(indices.min()):08d}-{digest}.parquet"


def write_part(batch: dict[str, np.ndarray], data_dir: str, config_json: str) -> dict:
    """Encode PNGs and write the batch as one Parquet part, atomically; return its manifest rows."""
    config = GenerateConfig.model_validate_json(config_json)
    order = np.argsort(batch["index"])
    batch = {key: value[order] for key, value in batch.items()}
    n = len(batch["sample_id"])
    empty = [b""] * n
    sample_ids = [str(s) for s in batch["sample_id"]]
    columns = {
        "sample_id": sample_ids,
        "avatar_id": [str(s) for s in batch["avatar_id"]],
        "style": [str(s) for s in batch["style"]],
        "prompt": [str(s) for s in batch["prompt"]],
        "negative_prompt": [str(s) for s in batch["negative_prompt"]],
        "seed": batch["seed"].astype(np.int64),
        "yaw": batch["yaw"].astype(np.float32),
        "pitch": batch["pitch"].astype(np.float32),
        "view_bin": batch["view_bin"].astype(np.int32),
        "camera": [np.asarray(c, np.float32) for c in batch["camera"]],
        "image": [encode_png(img) for img in batch["image"]],
        "width": np.full(n, config.resolution, np.int32),
        "height": np.full(n, config.resolution, np.int32),
        "backend": [config.backend] * n,
        "attributes": [str(s) for s in batch["attributes"]],
        "true_yaw": batch["true_yaw"].astype(np.float32),
        "true_pitch": batch["true_pitch"].astype(np.float32),
        "openpose_image": [encode_png(i) for i in batch["openpose"]] if config.save_conditions else empty,
        "depth_image": [encode_png(i) for i in batch["depth"]] if config.save_conditions else empty,
        "mask": [encode_png(np.asarray(m, np.uint8)) for m in batch["mask"]],
    }
    table = pa.table(columns, schema=DATASET_SCHEMA)
    name = part_name(batch["index"], sample_ids)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(Path(data_dir) / name, sink.getvalue().to_pybytes())
    return {"sample_id": np.asarray(sample_ids), "part": np.asarray([name] * n)}


def completed_parts(data_dir: Path) -> dict[str, list[str]]:
    """Complete part files → their sample_ids. Leftover temporaries of a killed run are removed."""
    out: dict[str, list[str]] = {}
    if not data_dir.is_dir():
        return out
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith(f".{PART_PREFIX}") and ".tmp-" in path.name:
            path.unlink(missing_ok=True)
        elif path.name.startswith(PART_PREFIX) and path.suffix == ".parquet":
            out[path.name] = pq.read_table(path, columns=["sample_id"])["sample_id"].to_pylist()
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
