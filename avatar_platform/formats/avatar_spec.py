"""One avatar request, in one place (issue #11): what can be asked of a model for each avatar,
every default and every limit. The HTTP API's bodies are these models; the pyfunc's input
columns and the `sample` options take their defaults and bounds from them.

- `RenderSpec`: how each avatar is rendered (views, resolution, mesh, turntable, ψ);
- `AvatarSpec`: that, and what a picture request adds (samples, guidance, refine, tune).

A bound here is the most any surface accepts. A served request (a pyfunc row, an HTTP body)
renders on a replica, so its mesh grid is capped lower (`SERVED_MESH_RESOLUTION`), and a
deployment lowers the limits further in its `ServeConfig`. `sample` runs on the user's own
machine and starts from more generous defaults (`SAMPLE_DEFAULTS`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TRUNCATION = 0.7  # ψ of a sampled avatar (1 = none); also what `eval` renders its pages at
MAX_SEED = 2**63 - 1  # torch's seeds are int64
VIEWS = 4  # views around the head, front first
MAX_VIEWS = 64
FRAMES = 24  # turntable frames
MAX_FRAMES = 360
MESH_RESOLUTION = 64  # marching-cubes grid side of a served or pyfunc mesh
MAX_MESH_RESOLUTION = 1024  # 1024³ density queries: minutes on a GPU, the most `sample` makes
SERVED_MESH_RESOLUTION = 256  # the most one served request may ask of a replica
MAX_RESOLUTION = 4096  # side of a returned view (resized from the model's own)
MAX_SAMPLES = 16  # avatars made from one picture
MAX_GUIDANCE = 30.0
MAX_REFINE_STEPS = 2000  # projection steps of `refine`
MAX_TUNE_STEPS = 2000  # pivotal-tuning steps of `tune`

# `sample` is run by a person looking at the results: several samples of a picture, and a finer
# mesh than a served request's
SAMPLE_DEFAULTS = {"num_samples": 4, "mesh_resolution": 128}


class RenderSpec(BaseModel):
    """How to render each avatar of a request."""

    model_config = ConfigDict(extra="forbid")

    views: int = Field(VIEWS, ge=1, le=MAX_VIEWS, description="views around the head, front first")
    resolution: int | None = Field(
        None, ge=16, le=MAX_RESOLUTION, description="side of each returned view (default: the model's own)"
    )
    mesh: bool = Field(False, description="also extract a GLB mesh")
    mesh_resolution: int = Field(
        MESH_RESOLUTION, ge=16, le=MAX_MESH_RESOLUTION, description="marching-cubes grid side"
    )
    turntable: bool = Field(True, description="also render a turntable GIF")
    frames: int = Field(FRAMES, ge=2, le=MAX_FRAMES, description="turntable frames")
    truncation: float = Field(TRUNCATION, ge=0.0, le=1.0, description="truncation ψ (1 = none)")


class AvatarSpec(RenderSpec):
    """A request's avatars from a picture: how many, and how closely they follow it."""

    num_samples: int = Field(
        1, ge=1, le=MAX_SAMPLES, description="avatars made from the picture (they differ)"
    )
    guidance: float | None = Field(
        None, ge=0.0, le=MAX_GUIDANCE, description="guidance λ (default: the model's own)"
    )
    refine: int = Field(
        0,
        ge=0,
        le=MAX_REFINE_STEPS,
        description="fit the avatar to the picture: projection steps (one avatar, the best sample)",
    )
    tune: int = Field(
        0, ge=0, le=MAX_TUNE_STEPS, description="then pivotal tuning of a copy of the generator: steps"
    )


def bounds(field: str) -> tuple[Any, Any, Any]:
    """(default, lowest, highest) of a field of `AvatarSpec`; None where it has no bound."""
    info = AvatarSpec.model_fields[field]
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return info.default, low, high


def served_bounds(field: str) -> tuple[Any, Any, Any]:
    """`bounds` of a served request: the mesh grid capped at `SERVED_MESH_RESOLUTION`."""
    default, low, high = bounds(field)
    if field == "mesh_resolution":
        high = SERVED_MESH_RESOLUTION
    return default, low, high
