"""The one interface every image backend implements, and what it is asked for per image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class ImageRequest:
    """Everything a backend may use to make one image.

    A diffusion backend reads the prompts, the seed and the condition images; the procedural
    backend re-renders the template itself at (`render_yaw`, `render_pitch`).
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


class ImageBackend(Protocol):
    """Makes images from requests; `identity()` goes into the dataset card."""

    name: str

    def generate(self, requests: list[ImageRequest], resolution: int) -> list[np.ndarray]:
        """(R, R, 3) uint8 images, one per request, in order."""
        ...

    def identity(self) -> dict:
        """The backend and the exact models it uses (paths, hub ids, hashes)."""
        ...
