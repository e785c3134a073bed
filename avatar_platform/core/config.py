"""Strict, typed configs and the named presets (`tiny`, `demo`, `paper`).

A stage's config is resolved in three layers — the preset shipped in `avatar_platform/configs/`,
an optional user YAML file, then CLI flags — and validated once by pydantic with unknown keys
forbidden, so a misspelled key fails at once with the list of valid keys.
"""

from __future__ import annotations

import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avatar_platform.core.errors import AvatarPlatformError

PRESETS: tuple[str, ...] = ("tiny", "demo", "paper")
# config keys whose CLI flag is not the key with dashes (the rest are: num_images → --num-images)
FLAG_OF_KEY = {"gpu_wait_s": "--gpu-wait"}

T = TypeVar("T", bound="StrictConfig")


class StrictConfig(BaseModel):
    """Base of every config: unknown keys are errors, values are immutable once resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GpuPolicy(StrictConfig):
    """Whether a Ray job's workers take GPUs (`core.ray_runtime.gpus_to_use` reads it): the
    fields `generate` and every `train` config share."""

    gpus: Literal["auto", "required", "none"] = Field(
        "auto",
        description="auto: GPUs when the cluster has them; required: wait up to gpu_wait_s for "
        "them, never fall back to the CPU; none: CPUs only",
    )
    gpu_wait_s: float = Field(300.0, ge=0, description="how long gpus: required waits for GPUs")


def load_preset(name: str) -> dict[str, Any]:
    """The preset named `name` as a dict of sections (`{"generate": {...}, ...}`)."""
    if name not in PRESETS:
        raise AvatarPlatformError(
            f"unknown preset '{name}'",
            expected=f"one of {', '.join(PRESETS)}",
            fix="pass --preset tiny|demo|paper",
        )
    text = resources.files("avatar_platform.configs").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def load_yaml_file(path: Path) -> dict[str, Any]:
    """A user config file: a mapping of sections; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise AvatarPlatformError(
            f"config file '{path}' does not exist", fix="pass the path of a YAML file to --config"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise AvatarPlatformError(
            f"config file '{path}' is not valid YAML ({err})".replace("\n", " "),
            fix="correct the YAML syntax",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AvatarPlatformError(
            f"config file '{path}' holds a {type(data).__name__}",
            expected="a mapping of sections, e.g. 'generate: {num_images: 64}'",
        )
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`; nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(
    model_cls: type[T],
    section: str,
    preset: str,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Preset → YAML file → flags, validated strictly into `model_cls`.

    `overrides` holds only the flags the user actually gave (None values are dropped), keyed like
    the config (`{"num_images": 64, "controlnet": {"steps": 10}}`).
    """
    preset_data = load_preset(preset)
    data = dict(preset_data.get(section) or {})
    source = f"preset '{preset}'"
    if config_file is not None:
        file_data = load_yaml_file(config_file)
        unknown = sorted(set(file_data) - set(preset_data))
        if unknown:
            raise AvatarPlatformError(
                f"unknown section '{unknown[0]}' in config file '{config_file}'",
                expected=f"sections among {', '.join(sorted(preset_data))}",
                fix=_suggest(unknown[0], sorted(preset_data)),
            )
        section_data = file_data.get(section) or {}
        if not isinstance(section_data, dict):
            raise AvatarPlatformError(
                f"section '{section}' of config file '{config_file}' holds a {type(section_data).__name__}",
                expected=f"a mapping of keys, e.g. '{section}: {{key: value}}'",
            )
        data = deep_merge(data, section_data)
        source = f"config file '{config_file}'"
    if overrides:
        data = deep_merge(data, _drop_none(overrides))
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        raise config_error(err, model_cls, section, source) from None


def config_error(
    err: ValidationError, model_cls: type[BaseModel], section: str, source: str
) -> AvatarPlatformError:
    """The first problem of a ValidationError as one actionable line."""
    first = err.errors()[0]
    loc = tuple(str(part) for part in first["loc"])
    dotted = ".".join((section, *loc))
    if first["type"] == "extra_forbidden":
        valid = _field_names(model_cls, loc[:-1])
        return AvatarPlatformError(
            f"unknown config key '{dotted}' (from {source} or flags)",
            expected=f"keys among {', '.join(valid)}",
            fix=_suggest(loc[-1], valid),
        )
    got = first.get("input")
    # an item of a list field: name the field and the item ('modes', item 0), not 'modes.0'
    item = ""
    if len(loc) > 1 and loc[-1].isdigit():
        item, loc = f"item {loc[-1]} of ", loc[:-1]
        dotted = ".".join((section, *loc))
    is_section = not item and (isinstance(got, dict | BaseModel) or _model_at(model_cls, loc) is not None)
    shown = "" if is_section else f" {json.dumps(got, default=str)}"
    described = _field_description(model_cls, loc)
    # top-level scalar and list keys have a flag of the same name; nested ones live in a config file
    if len(loc) == 1 and not is_section:
        flag = FLAG_OF_KEY.get(loc[0], f"--{loc[0].replace('_', '-')}")
        fix = f"pass a valid {flag}, or correct '{dotted}' in {source}"
    else:
        fix = f"correct '{dotted}' in {source} (a --config YAML file)"
    return AvatarPlatformError(
        f"invalid value{shown} for {item}'{dotted}'"
        + (f" ({described})" if described else "")
        + f": {first['msg']}",
        fix=fix,
    )


def save_resolved(config: BaseModel, path: Path) -> None:
    """Write the fully resolved config as JSON (every run keeps one beside its outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def _model_at(model_cls: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: Any = model_cls
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        current = fields[part].annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_names(model_cls: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    model = _model_at(model_cls, loc)
    return sorted(model.model_fields) if model else []


def _field_description(model_cls: type[BaseModel], loc: tuple[str, ...]) -> str | None:
    parent = _model_at(model_cls, loc[:-1])
    if parent is None or not loc or loc[-1] not in parent.model_fields:
        return None
    return parent.model_fields[loc[-1]].description


def _suggest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else None
