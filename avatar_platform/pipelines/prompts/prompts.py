"""Prompts for one image: style + view-specific words + attributes, and the negative prompt.

docs/method.md §1: side and back views name the view in the prompt and put the facial features that
must not appear into the negative prompt (ControlNet tends to paint a face onto every view); each
image samples a few attribute categories that can be seen from its view. Deterministic per seed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import yaml
from pydantic import Field

from avatar_platform.core.config import StrictConfig
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.poses.view_bins import view_name


class PromptConfig(StrictConfig):
    """The words around the style and the attributes."""

    attributes_per_image: int = Field(5, ge=0, description="attribute categories sampled per image")
    front_words: str = Field("front view, facing the viewer", description="added to front views")
    side_words: str = Field("side view, profile", description="added to left/right views")
    back_words: str = Field("back view, back of the head", description="added to back views")
    suffix: str = Field(
        "head and shoulders, centered, plain background, high quality", description="appended to every prompt"
    )
    negative_prompt: str = Field(
        "lowres, blurry, deformed, disfigured, extra limbs, watermark, text",
        description="the negative prompt of every view",
    )
    side_negative: str = Field(
        "frontal face, looking at viewer", description="added to the negative prompt of side views"
    )
    back_negative: str = Field(
        "face, eyes, nose, mouth", description="added to the negative prompt of back views"
    )


@dataclass(frozen=True)
class Style:
    """One catalog style: its prompt text and how the procedural backend imitates it."""

    name: str
    prompt: str
    procedural: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttributeCategory:
    name: str
    views: tuple[str, ...]
    values: tuple[str, ...]
    colors: dict[str, str]  # value → hex, for categories that colour a part
    render: str | None = None  # which part a value colours in the procedural backend


@dataclass(frozen=True)
class PromptSpec:
    prompt: str
    negative_prompt: str
    attributes: dict[str, str]  # category → value


@functools.lru_cache(maxsize=1)
def style_catalog() -> dict[str, Style]:
    """All styles by name, in catalog order."""
    text = resources.files(__package__).joinpath("styles.yaml").read_text()
    return {
        s["name"]: Style(s["name"], s["prompt"], s.get("procedural", {}))
        for s in yaml.safe_load(text)["styles"]
    }


@functools.lru_cache(maxsize=1)
def attribute_catalog() -> tuple[AttributeCategory, ...]:
    text = resources.files(__package__).joinpath("attributes.yaml").read_text()
    out = []
    for name, spec in yaml.safe_load(text)["categories"].items():
        values = spec["values"]
        colors = dict(values) if isinstance(values, dict) else {}
        out.append(AttributeCategory(name, tuple(spec["views"]), tuple(values), colors, spec.get("render")))
    return tuple(out)


def resolve_styles(names: list[str] | None) -> list[Style]:
    """The styles named (all of them for None or ["all"]), or one error listing the valid names."""
    catalog = style_catalog()
    if not names or names == ["all"]:
        return list(catalog.values())
    unknown = [name for name in names if name not in catalog]
    if unknown:
        raise AvatarPlatformError(
            f"unknown style '{unknown[0]}'",
            expected=f"names from the catalog: {', '.join(catalog)}",
            fix="pass --styles with catalog names separated by commas, or 'all'",
        )
    return [catalog[name] for name in dict.fromkeys(names)]


def sample_attributes(seed: int, view: str, count: int) -> dict[str, str]:
    """`count` categories visible from `view`, one value each; deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    visible = [c for c in attribute_catalog() if view in c.views]
    chosen = rng.choice(len(visible), size=min(count, len(visible)), replace=False)
    return {visible[i].name: str(rng.choice(visible[i].values)) for i in sorted(chosen)}


def build_prompt(
    style: Style,
    view_bin: int,
    seed: int,
    config: PromptConfig,
    fixed_attributes: dict[str, str] | None = None,
    subject: str | None = None,
) -> PromptSpec:
    """The prompt and negative prompt of one image.

    `fixed_attributes` are traits of the template's geometry (hair style, eyewear) stated in every
    view; `subject` (a LoRA character token) replaces the style text when given.
    """
    view = view_name(view_bin)
    attributes = dict(fixed_attributes or {})
    attributes.update(sample_attributes(seed, view, config.attributes_per_image))
    view_words = {"front": config.front_words, "back": config.back_words}.get(view, config.side_words)
    negative = config.negative_prompt
    if view == "back":
        negative = f"{negative}, {config.back_negative}"
    elif view in ("left", "right"):
        negative = f"{negative}, {config.side_negative}"
    parts = [subject or style.prompt, view_words, *attributes.values(), config.suffix]
    return PromptSpec(", ".join(p for p in parts if p), negative, attributes)
