"""The one interface every image backend implements, and what it is asked for per image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class ImageRequest:
    """Everything a backend may use to make one image.

    A diffusion backend reads the prompts, the seed and the condition images (and `mask`, the
    condition render's silhouette, for its image masks); the procedural backend re-renders the
    template itself at (`render_yaw`, `render_pitch`) and takes its mask from that render.
    """

    prompt: str
    negative_prompt: str
    seed: int
    openpose: np.ndarray  # (R, R, 3) uint8
    depth: np.ndarray  # (R, R, 3) uint8
    style: str
    avatar_seed: int
    render_yaw: float
    render_pitch: float
    attributes: dict[str, str] = field(default_factory=dict)
    mask: np.ndarray | None = None  # (R, R) uint8, 255 = the template's foreground at the camera


def mask_from_bool(foreground: np.ndarray) -> np.ndarray:
    """(R, R) uint8 mask, 255 on the foreground and 0 elsewhere, from a bool (or 0/1) array."""
    return np.where(np.asarray(foreground, bool), 255, 0).astype(np.uint8)


class ImageBackend(Protocol):
    """Makes images (and their foreground masks) from requests; `identity()` goes into the
    dataset card."""

    name: str

    def generate(self, requests: list[ImageRequest], resolution: int) -> list[np.ndarray]:
        """(R, R, 3) uint8 images, one per request, in order."""
        ...

    def generate_masked(
        self, requests: list[ImageRequest], resolution: int
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The images of `generate` and, per image, its (R, R) uint8 foreground mask (255 = the
        avatar, 0 = background). What the generate job calls."""
        ...

    def identity(self) -> dict:
        """The backend and the exact models it uses (paths, hub ids, hashes)."""
        ...
