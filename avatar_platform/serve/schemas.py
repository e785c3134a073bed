"""The HTTP API's request and response bodies (pydantic; unknown fields are refused).

The avatar options and their static bounds are `formats.avatar_spec`'s; the limits a deployment
chooses (most seeds, views, pixels) are checked against its `ServeConfig` by `check_limits`, so
one config change moves them everywhere.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from avatar_platform.formats.avatar_spec import MAX_SEED, AvatarSpec, RenderSpec, bounds
from avatar_platform.serve.config import ServeConfig


class AvatarOptions(RenderSpec):
    """How to render each avatar of a request (`formats.avatar_spec.RenderSpec`)."""


class SeedsRequest(AvatarOptions):
    """`POST /v1/avatars` with JSON: one avatar per seed."""

    # strict: `true` and "5" are not seeds. The bound is exclusive, 2^63: a float64 reader of
    # the spec (JavaScript, many fuzzers) reads 2^63 - 1 as 2^63, one above the real limit
    seeds: list[Annotated[StrictInt, Field(ge=0, lt=MAX_SEED + 1)]] = Field(
        ..., min_length=1, description="non-negative integer seeds, one avatar each"
    )


class ImageOptions(AvatarSpec):
    """`POST /v1/avatars` as a multipart upload: the picture in `image`, these as form fields
    (`formats.avatar_spec.AvatarSpec`)."""


class ModelInfo(BaseModel):
    """Which model is live: its URI and, for registry URIs, the registered version."""

    uri: str
    name: str | None = None
    version: int | None = None
    alias: str | None = None
    image_conditioning: bool
    resolution: int
    device: str


class AvatarLinks(BaseModel):
    index: int = Field(description="position in this result set")
    seed: int | None = Field(None, description="the seed, for seed requests")
    sample: int = Field(description="which sample of the request's picture (0 for seeds)")
    views: list[str] = Field(description="one PNG per view, front first")
    views_grid: str = Field(description="the views side by side in one PNG")
    turntable: str | None = Field(None, description="GIF, when asked for")
    mesh: str | None = Field(None, description="GLB, when asked for")
    mesh_faces: int | None = Field(None, description="faces of the mesh (0: no surface found)")


class AvatarSet(BaseModel):
    """What `POST /v1/avatars` returns and `GET /v1/avatars/{id}` returns again."""

    id: str
    created: str
    model: ModelInfo
    options: dict
    avatars: list[AvatarLinks]
    links: dict[str, str]


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, what was expected, how to fix it")


# request field → the ServeConfig limit on it
LIMITS = {
    "views": "max_views",
    "resolution": "max_resolution",
    "frames": "max_frames",
    "mesh_resolution": "max_mesh_resolution",
    "num_samples": "max_seeds",
    "refine": "max_refine_steps",
    "tune": "max_tune_steps",
}


def within_limits(options: RenderSpec, config: ServeConfig) -> AvatarOptions:
    """`options` with each default that is over the deployment's limit lowered to it (a server
    allowing 2 frames makes 2 by default); values that were sent are left for `check_limits`."""
    update = {}
    for field, limit in LIMITS.items():
        value = getattr(options, field, None)
        unsent = field not in options.model_fields_set
        if unsent and value is not None and value > getattr(config, limit):
            update[field] = getattr(config, limit)
    return options.model_copy(update=update) if update else options


def check_limits(options: RenderSpec, config: ServeConfig, seeds: int = 0) -> list[str]:
    """The deployment's own limits that `options` exceeds, as messages (empty: within them).
    Every value is checked, even frames without a turntable: the spec states each bound once."""
    problems = []
    if seeds > config.max_seeds:
        problems.append(f"seeds is {seeds}, this server allows at most {config.max_seeds}")
    for field, limit in LIMITS.items():
        value = getattr(options, field, None)
        if value is not None and value > getattr(config, limit):
            problems.append(f"{field} is {value}, this server allows at most {getattr(config, limit)}")
    return problems


def limits_schema(config: ServeConfig) -> dict[str, dict]:
    """The deployment's limits as JSON-schema keywords of the request fields (for the spec)."""
    fields = {**ImageOptions.model_fields, **SeedsRequest.model_fields}
    schema: dict[str, dict] = {"seeds": {"maxItems": config.max_seeds}}
    for field, limit in LIMITS.items():
        # num_samples shares max_seeds, which may be above what the spec allows a picture
        highest = min(getattr(config, limit), bounds(field)[2])
        schema[field] = {"maximum": highest}
        default = fields[field].default
        if default is not None:
            schema[field]["default"] = min(default, highest)
    return schema
