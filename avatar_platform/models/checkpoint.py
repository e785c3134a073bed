"""Weights on disk: `<name>.json` (constructor config + format_version) + `<name>.safetensors`.

No code or objects are pickled; loading checks the format version and the architecture, so a
checkpoint of another network or a damaged file is one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import atomic_write_bytes

FORMAT_VERSION = 1


def save_module(module: torch.nn.Module, config: BaseModel, folder: Path, name: str) -> None:
    """Write `folder/<name>.json` and `folder/<name>.safetensors` (each atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": type(module).__name__,
        "config": config.model_dump(mode="json"),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = folder / f".{name}.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    tmp.replace(folder / f"{name}.safetensors")
    atomic_write_bytes(folder / f"{name}.json", (json.dumps(meta, indent=2) + "\n").encode())


def check_format_version(found, expected: int, what: str, fix: str) -> None:
    """One clear error when a file written by another format of avatar-platform is read."""
    if found != expected:
        raise AvatarPlatformError(
            f"{what} has format_version {found!r}",
            expected=f"format_version {expected} (this version of avatar-platform)",
            fix=fix,
        )


def load_module(module_cls, config_cls: type[BaseModel], folder: Path, name: str, map_location: str = "cpu"):
    """Build `module_cls(config)` from `folder/<name>.json` and load its safetensors weights."""
    folder = Path(folder)
    meta_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise AvatarPlatformError(
            f"'{folder}' holds no '{name}' checkpoint ({meta_path.name} + {weights_path.name})",
            expected="a model folder written by avatar-platform training",
            fix="pass a checkpoint folder, a training output folder or a models:/ URI",
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise AvatarPlatformError(
            f"'{meta_path}' has checkpoint format {meta.get('format_version')}",
            expected=f"format {FORMAT_VERSION}",
            fix="use a checkpoint written by this version of avatar-platform",
        )
    if meta.get("architecture") != module_cls.__name__:
        raise AvatarPlatformError(
            f"'{meta_path}' is a {meta.get('architecture')} checkpoint",
            expected=f"a {module_cls.__name__} checkpoint",
        )
    try:
        config = config_cls.model_validate(meta["config"])
    except ValidationError as err:
        raise AvatarPlatformError(
            f"'{meta_path}' has a config this version cannot read ({err.errors()[0]['msg']})"
        ) from None
    module = module_cls(config)
    try:
        state = load_file(str(weights_path), device=map_location)
    except (SafetensorError, OSError, ValueError) as err:
        raise AvatarPlatformError(
            f"cannot read the weights '{weights_path}' ({err})",
            expected="an intact safetensors file",
            fix="re-copy the checkpoint or use an earlier one",
        ) from None
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AvatarPlatformError(
            f"the weights in '{weights_path}' do not fit the {module_cls.__name__} of its config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
            fix="use the config.json that was saved with these weights",
        )
    return module
