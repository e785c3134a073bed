"""The HTTP API's request and response bodies (pydantic; unknown fields are refused).

Static bounds live here; the limits a deployment chooses (most seeds, views, pixels) are checked
against its `ServeConfig` by `check_limits`, so one config change moves them everywhere.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from avatar_platform.formats.avatar_spec import FRAMES, MAX_SEED, MESH_RESOLUTION, TRUNCATION, VIEWS
from avatar_platform.serve.config import ServeConfig


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AvatarOptions(_Body):
    """How to render each avatar of a request."""

    views: int = Field(VIEWS, ge=1, description="views around the head, front first")
    resolution: int | None = Field(
        None, ge=16, description="side of each returned view (default: the model's own)"
    )
    mesh: bool = Field(False, description="also extract a GLB mesh")
    mesh_resolution: int = Field(MESH_RESOLUTION, ge=16, description="marching-cubes grid side")
    turntable: bool = Field(True, description="also render a turntable GIF")
    frames: int = Field(FRAMES, ge=2, description="turntable frames")
    truncation: float = Field(TRUNCATION, ge=0.0, le=1.0, description="truncation ψ (1 = none)")


class SeedsRequest(AvatarOptions):
    """`POST /v1/avatars` with JSON: one avatar per seed."""

    # strict: `true` and "5" are not seeds. The bound is exclusive, 2^63: a float64 reader of
    # the spec (JavaScript, many fuzzers) reads 2^63 - 1 as 2^63, one above the real limit
    seeds: list[Annotated[StrictInt, Field(ge=0, lt=MAX_SEED + 1)]] = Field(
        ..., min_length=1, description="non-negative integer seeds, one avatar each"
    )


class ImageOptions(AvatarOptions):
    """`POST /v1/avatars` as a multipart upload: the picture in `image`, these as form fields."""

    num_samples: int = Field(1, ge=1, description="avatars made from the picture (they differ)")
    guidance: float | None = Field(None, ge=0.0, le=30.0, description="guidance λ (default: the model's own)")
    refine: int = Field(
        0, ge=0, description="fit the avatar to the picture: projection steps (one avatar, the best sample)"
    )
    tune: int = Field(0, ge=0, description="then pivotal tuning of a copy of the generator: steps")


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


def within_limits(options: AvatarOptions, config: ServeConfig) -> AvatarOptions:
    """`options` with each default that is over the deployment's limit lowered to it (a server
    allowing 2 frames makes 2 by default); values that were sent are left for `check_limits`."""
    update = {}
    for field, limit in LIMITS.items():
        value = getattr(options, field, None)
        unsent = field not in options.model_fields_set
        if unsent and value is not None and value > getattr(config, limit):
            update[field] = getattr(config, limit)
    return options.model_copy(update=update) if update else options


def check_limits(options: AvatarOptions, config: ServeConfig, seeds: int = 0) -> list[str]:
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
    bounds: dict[str, dict] = {"seeds": {"maxItems": config.max_seeds}}
    for field, limit in LIMITS.items():
        bounds[field] = {"maximum": getattr(config, limit)}
        default = fields[field].default
        if default is not None:
            bounds[field]["default"] = min(default, getattr(config, limit))
    return bounds
