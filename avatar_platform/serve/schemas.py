"""The HTTP API's request and response bodies (pydantic; unknown fields are refused).

Static bounds live here; the limits a deployment chooses (most seeds, views, pixels) are checked
against its `ServeConfig` by `check_limits`, so one config change moves them everywhere.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from avatar_platform.serve.config import ServeConfig

MAX_SEED = 2**63 - 1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AvatarOptions(_Body):
    """How to render each avatar of a request."""

    views: int = Field(4, ge=1, description="views around the head, front first")
    resolution: int | None = Field(
        None, ge=16, description="side of each returned view (default: the model's own)"
    )
    mesh: bool = Field(False, description="also extract a GLB mesh")
    mesh_resolution: int = Field(64, ge=16, description="marching-cubes grid side")
    turntable: bool = Field(True, description="also render a turntable GIF")
    frames: int = Field(24, ge=2, description="turntable frames")
    truncation: float = Field(0.7, ge=0.0, le=1.0, description="truncation ψ (1 = none)")


class SeedsRequest(AvatarOptions):
    """`POST /v1/avatars` with JSON: one avatar per seed."""

    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(
        ..., min_length=1, description="non-negative integer seeds, one avatar each"
    )


class ImageOptions(AvatarOptions):
    """`POST /v1/avatars` as a multipart upload: the picture in `image`, these as form fields."""

    num_samples: int = Field(1, ge=1, description="avatars made from the picture (they differ)")
    guidance: float | None = Field(
        None, ge=0.0, le=30.0, description="guidance λ (default: the model's own)"
    )


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


def check_limits(options: AvatarOptions, config: ServeConfig, seeds: int = 0) -> list[str]:
    """The deployment's own limits that `options` exceeds, as messages (empty: within them)."""
    problems = []
    for name, value, limit in (
        ("seeds", seeds, config.max_seeds),
        ("views", options.views, config.max_views),
        ("resolution", options.resolution or 0, config.max_resolution),
        ("frames", options.frames if options.turntable else 0, config.max_frames),
        ("mesh_resolution", options.mesh_resolution if options.mesh else 0,
         config.max_mesh_resolution),
    ):  # fmt: skip
        if value > limit:
            problems.append(f"{name} is {value}, this server allows at most {limit}")
    if isinstance(options, ImageOptions) and options.num_samples > config.max_seeds:
        problems.append(
            f"num_samples is {options.num_samples}, this server allows at most {config.max_seeds}"
        )
    return problems
