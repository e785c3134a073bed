"""The LoRA folder that `train lora` writes and `generate --lora` reads: the adapter in diffusers'
format (`pytorch_lora_weights.safetensors`, loadable by `pipe.load_lora_weights`) beside
`lora.json` (token, base model, rank, step). The trainer writes it, the ControlNet backend reads
it; both take the names from here."""

from __future__ import annotations

import json
from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError, read_user_file
from avatar_platform.core.hub import model_source

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' name, found by load_lora_weights
LORA_META = "lora.json"  # written by `train lora` beside the weights: token, base, rank, step
LORA_FORMAT_VERSION = 1  # of LORA_META


def lora_folder(path: str) -> str:
    """A `train lora` output folder stands for its final adapter in `model/`; else `path`."""
    model = Path(path).expanduser() / "model"
    return str(model) if (model / LORA_WEIGHTS).is_file() else path


def lora_weights(source: str) -> Path | None:
    """The local weights file (or folder) of a LoRA, None for a hub id. A safetensors file that
    holds no LoRA fails here, once, rather than in every image actor."""
    path = Path(source)
    weights = path / LORA_WEIGHTS if (path / LORA_WEIGHTS).is_file() else path
    if not weights.exists():
        return None
    if weights.is_file() and weights.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(weights, "pt") as handle:
                keys = list(handle.keys())
        except (OSError, SafetensorError) as err:
            keys, problem = [], str(err)
        else:
            problem = f"no LoRA tensors among its {len(keys)} tensors"
        if not any("lora" in key for key in keys):
            raise AvatarPlatformError(
                f"cannot load the LoRA weights '{weights}' ({problem})",
                expected="a diffusers-format LoRA (pytorch_lora_weights.safetensors)",
                fix="pass the model folder of `avatar-platform train lora`, or its run folder",
            )
    return weights


def lora_meta(lora: str) -> dict:
    """The `lora.json` of a `train lora` folder (or beside a weights file); {} for other LoRAs."""
    path = Path(model_source(lora, "LoRA weights"))
    meta_file = (path if path.is_dir() else path.parent) / LORA_META
    if not meta_file.is_file():
        return {}
    meta = read_user_file(
        meta_file,
        "the LoRA description",
        expected="the lora.json that `avatar-platform train lora` writes",
        fix="copy it again from the training output, or delete it to keep the style text",
        parse=json.loads,
    )
    return meta if isinstance(meta, dict) else {}
