"""The job spec: one deterministic row per planned image, written as Parquet before any work.

Planning first makes the job resumable: the spec names every `sample_id` once, so a re-run only has
to find which ids already sit in complete part files.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa

from avatar_platform.formats.dataset_schema import DATASET_SCHEMA
from avatar_platform.pipelines.datagen.config import GenerateConfig
from avatar_platform.pipelines.datagen.controlnet_backend import lora_token
from avatar_platform.pipelines.datagen.procedural_backend import flipped_views, mirrored_yaw, perturbed_yaw
from avatar_platform.pipelines.poses.camera import camera_from_angles, sample_view_angles
from avatar_platform.pipelines.poses.template import BustParams
from avatar_platform.pipelines.poses.view_bins import coarse_view_bin
from avatar_platform.pipelines.prompts.prompts import build_prompt, resolve_styles


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint32)[0])


def plan(config: GenerateConfig) -> pa.Table:
    """The spec table of `config` (same config → byte-identical table)."""
    styles = resolve_styles(config.styles)
    # a character LoRA's token replaces the style text (docs/method.md §1), so it is the rows' style
    character = lora_token(config.controlnet) if config.backend == "controlnet" else None
    views = config.views_per_avatar
    columns: dict[str, list] = {name: [] for name in SPEC_COLUMNS}
    for avatar in range(math.ceil(config.num_images / views)):
        avatar_seed = _seed(config.seed, avatar)
        rng = np.random.default_rng(_seed(config.seed, avatar, 1))
        yaws, pitches = sample_view_angles(rng, views, config.camera)
        # round-robin over styles keeps the dataset uniform over them (docs/method.md §1)
        style = styles[avatar % len(styles)]
        fixed = {} if config.template_mesh else BustParams.sample(avatar_seed).prompt_attributes()
        for view in range(views):
            index = avatar * views + view
            if index >= config.num_images:
                break
            yaw, pitch = float(yaws[view]), float(pitches[view])
            seed = _seed(config.seed, avatar, view, 2)
            view_bin = int(coarse_view_bin(yaw))
            prompt = build_prompt(style, view_bin, seed, config.prompts, fixed, character)
            true_yaw = yaw
            if config.backend == "procedural":
                true_yaw = perturbed_yaw(yaw, rng, config.procedural)
            row = {
                "sample_id": f"s{config.seed}-a{avatar:06d}-v{view:02d}",
                "index": index,
                "avatar_id": f"a{avatar:06d}",
                "avatar_seed": avatar_seed,
                "style": character or style.name,
                "prompt": prompt.prompt,
                "negative_prompt": prompt.negative_prompt,
                "attributes": json.dumps(prompt.attributes, sort_keys=True),
                "seed": seed,
                "yaw": yaw,
                "pitch": pitch,
                "view_bin": view_bin,
                "camera": camera_from_angles(yaw, pitch, config.camera).tolist(),
                "true_yaw": true_yaw,
                "true_pitch": pitch,
            }
            for name, value in row.items():
                columns[name].append(value)
    if config.backend == "procedural" and config.procedural.pose_noise_mode == "flip":
        for i in flipped_views(np.array(columns["yaw"]), config.procedural, _seed(config.seed, 3)):
            columns["true_yaw"][i] = mirrored_yaw(columns["yaw"][i])
    return pa.table(columns, schema=SPEC_SCHEMA)


# the plan's own bookkeeping (index, avatar_seed), and the dataset columns it decides, defined once
# in the dataset's schema: a planned value reaches the dataset with the same type
SPEC_SCHEMA = pa.schema(
    [
        DATASET_SCHEMA.field("sample_id"),
        pa.field("index", pa.int64()),
        DATASET_SCHEMA.field("avatar_id"),
        pa.field("avatar_seed", pa.int64()),
        DATASET_SCHEMA.field("style"),
        DATASET_SCHEMA.field("prompt"),
        DATASET_SCHEMA.field("negative_prompt"),
        DATASET_SCHEMA.field("attributes"),
        DATASET_SCHEMA.field("seed"),
        DATASET_SCHEMA.field("yaw"),
        DATASET_SCHEMA.field("pitch"),
        DATASET_SCHEMA.field("view_bin"),
        DATASET_SCHEMA.field("camera"),
        DATASET_SCHEMA.field("true_yaw"),
        DATASET_SCHEMA.field("true_pitch"),
    ]
)
SPEC_COLUMNS = SPEC_SCHEMA.names
