"""The embedded default image backend: renders the template bust itself in the style's palette.

It stands in for Stable Diffusion where no weights exist and keeps ground-truth geometry. With
`pose_noise` some side/back images are rendered at a perturbed yaw while the dataset keeps the
planned camera — the misalignment ControlNet causes — so later stages can be tested against a
known truth (the truth is kept in the `true_yaw` / `true_pitch` columns).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from avatar_platform.core.config import StrictConfig
from avatar_platform.pipelines.datagen.backend import ImageRequest, mask_from_bool
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles, split_camera
from avatar_platform.pipelines.poses.conditioning import raycast
from avatar_platform.pipelines.poses.template import PART_NAMES, template_for
from avatar_platform.pipelines.prompts.prompts import attribute_catalog, style_catalog

PROCEDURAL_VERSION = "procedural/1"  # images unchanged by the masks
MASK_SOURCE = "procedural-gbuffer"
DEFAULT_PART_COLORS = {
    "skin": "#f1c9a5",
    "hair": "#5a3a22",
    "cloth": "#2c4f9e",
    "eye": "#2a1a10",
    "accessory": "#262626",
    "mouth": "#b0504a",
}


class ProceduralBackendConfig(StrictConfig):
    """The offline renderer."""

    pose_noise: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="probability that a side/back image is rendered at a perturbed yaw "
        "(its label keeps the planned camera)",
    )
    pose_noise_degrees: float = Field(
        35.0, ge=0.0, le=180.0, description="largest yaw perturbation, in degrees"
    )
    confident_yaw: float = Field(
        45.0, ge=0.0, le=180.0, description="views with |yaw| below this are never perturbed"
    )
    # last, so that a dataset planned before it keeps its config hash (job.config_hash)
    pose_noise_mode: Literal["jitter", "flip"] = Field(
        "jitter",
        description="jitter: each side/back view, with probability pose_noise, is rendered up to "
        "pose_noise_degrees off; flip: exactly the share pose_noise of the side/back views is "
        "rendered from the front-back mirrored yaw (180° − yaw), a face painted where the back "
        "should be, ControlNet's typical failure. The label keeps the planned camera in both",
    )


def _hex_to_rgb(color: str) -> np.ndarray:
    color = color.lstrip("#")
    return np.array([int(color[i : i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0


def _adjust_saturation(rgb: np.ndarray, factor: float) -> np.ndarray:
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(grey[..., None] + (rgb - grey[..., None]) * factor, 0.0, 1.0)


def part_palette(style: dict, attributes: dict[str, str], seed: int) -> np.ndarray:
    """(P, 3) float colours per part: defaults ← attribute colours ← the style's material."""
    colors = {name: _hex_to_rgb(c) for name, c in DEFAULT_PART_COLORS.items()}
    rng = np.random.default_rng(seed)
    for category in attribute_catalog():
        if category.render is None:
            continue
        value = attributes.get(category.name)
        if value is None:  # not in the prompt: any value of the category
            value = category.values[rng.integers(len(category.values))]
        colors[category.render] = _hex_to_rgb(category.colors[value])
    palette = np.stack([colors[name] for name in PART_NAMES])
    if style.get("material"):
        material = _hex_to_rgb(style["material"])
        keep = [PART_NAMES.index("eye")] if style.get("shading") != "metal" else []
        tint = 0.85 + 0.15 * palette.mean(axis=1, keepdims=True)  # parts stay distinguishable
        statue = np.clip(material[None] * tint, 0, 1)
        statue[keep] = palette[keep] * 0.5 + material * 0.5
        palette = statue
    return _adjust_saturation(palette, float(style.get("saturation", 1.0)))


def shade(gbuffer, camera: np.ndarray, palette: np.ndarray, style: dict) -> np.ndarray:
    """(R, R, 3) float image in [0, 1] of a G-buffer lit from the camera's upper left."""
    cam2world, _ = split_camera(camera)
    light = cam2world[:3, :3] @ np.array([-0.5, -0.7, -0.6])  # camera space: left, up, towards
    light /= np.linalg.norm(light)
    view = -cam2world[:3, 2]
    n = gbuffer.normal
    lambert = np.clip(n @ light, 0.0, 1.0)
    half = (light + view) / np.linalg.norm(light + view)
    spec = np.clip(n @ half, 0.0, 1.0)
    shading = style.get("shading", "smooth")
    if shading == "toon":
        intensity = 0.55 + 0.45 * (np.floor(lambert * 3.0) / 2.0).clip(0, 1)
    elif shading == "flat":
        intensity = 0.75 + 0.25 * (lambert > 0.4)
    elif shading == "metal":
        intensity = 0.25 + 0.55 * lambert + 1.2 * spec**24
    else:
        intensity = 0.4 + 0.6 * lambert + 0.25 * spec**16
    base = palette[np.minimum(gbuffer.part, len(palette) - 1)]
    image = np.clip(base * intensity[..., None], 0.0, 1.0)
    background = _hex_to_rgb(style.get("background", "#ffffff"))
    ramp = np.linspace(1.05, 0.9, image.shape[0], dtype=np.float32)[:, None, None]
    image = np.where(gbuffer.mask[..., None], image, np.clip(background * ramp, 0, 1))
    if style.get("outline"):
        image[_edges(gbuffer)] = 0.08
    return image


def _edges(gbuffer) -> np.ndarray:
    """Silhouette and depth/part discontinuities, one pixel wide."""
    depth = np.where(gbuffer.mask, gbuffer.depth, 10.0)
    edge = np.zeros_like(gbuffer.mask)
    for axis in (0, 1):
        jump = np.abs(np.diff(depth, axis=axis)) > 0.03
        jump |= np.diff(gbuffer.part.astype(np.int16), axis=axis) != 0
        if axis == 0:
            edge[1:] |= jump
        else:
            edge[:, 1:] |= jump
    return edge


def pixelate(image: np.ndarray, block: int) -> np.ndarray:
    """Average over block × block cells (voxel and pixel-art styles); (R, R[, C]) arrays."""
    size = image.shape[0]
    cells = max(size // max(block, 1), 1)
    step = size // cells
    crop = image[: cells * step, : cells * step]
    tail = image.shape[2:]
    small = crop.reshape(cells, step, cells, step, *tail).mean(axis=(1, 3))
    out = np.repeat(np.repeat(small, step, axis=0), step, axis=1)
    pad = ((0, size - out.shape[0]), (0, size - out.shape[1])) + ((0, 0),) * len(tail)
    return np.pad(out, pad, mode="edge")


def pixel_block(style: dict, resolution: int) -> int:
    """The pixelation block of a style at `resolution` (0 = not pixelated)."""
    return max(int(style["pixelate"] * resolution / 512), 2) if style.get("pixelate") else 0


def silhouette(gbuffer, style: dict) -> np.ndarray:
    """(R, R) bool: the pixels `shade` paints as the avatar rather than the background ramp.

    That is the G-buffer foreground, plus for `outline` styles the contour pixels that `_edges`
    marks just outside it (below / right of the figure): the ink line is drawn, and seen, as part
    of the figure, so every pixel outside the mask is exactly the background.
    """
    out = gbuffer.mask.copy()
    if style.get("outline"):
        out |= _edges(gbuffer)
    return out


def pixelate_mask(foreground: np.ndarray, block: int) -> np.ndarray:
    """A mask pixelated like its image: a block is foreground when at least half of it is (its
    colour is then at least half the avatar's)."""
    return pixelate(foreground.astype(np.float32), block) >= 0.5


class ProceduralBackend:
    """Renders templates with style palettes; exact cameras, no weights."""

    name = "procedural"

    def __init__(
        self,
        camera: CameraConfig,
        template_mesh: str | None = None,
        template_landmarks: str | None = None,
        template_normalize: bool = False,
    ):
        self.camera = camera
        self.template_mesh = template_mesh
        self.template_landmarks = template_landmarks
        self.template_normalize = template_normalize

    def render(self, request: ImageRequest, resolution: int) -> np.ndarray:
        return self.render_masked(request, resolution)[0]

    def render_masked(self, request: ImageRequest, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """(R, R, 3) uint8 image and its exact (R, R) uint8 mask (255 = avatar), both from the
        one G-buffer rendered at the true pose (`render_yaw`, `render_pitch`)."""
        template = template_for(
            request.avatar_seed, self.template_mesh, self.template_landmarks, self.template_normalize
        )
        camera = camera_from_angles(request.render_yaw, request.render_pitch, self.camera)
        style = style_catalog()[request.style].procedural
        gbuffer = raycast(template, camera, resolution)
        image = shade(gbuffer, camera, part_palette(style, request.attributes, request.seed), style)
        foreground = silhouette(gbuffer, style)
        block = pixel_block(style, resolution)
        if block:
            image = pixelate(image, block)
            foreground = pixelate_mask(foreground, block)
        return (image * 255.0 + 0.5).astype(np.uint8), mask_from_bool(foreground)

    def generate(self, requests: list[ImageRequest], resolution: int) -> list[np.ndarray]:
        return [self.render(request, resolution) for request in requests]

    def generate_masked(
        self, requests: list[ImageRequest], resolution: int
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        pairs = [self.render_masked(request, resolution) for request in requests]
        return [image for image, _ in pairs], [mask for _, mask in pairs]

    def identity(self) -> dict:
        return {"backend": self.name, "renderer": PROCEDURAL_VERSION}


def perturbed_yaw(yaw: float, rng: np.random.Generator, config: ProceduralBackendConfig) -> float:
    """The yaw actually rendered for a planned `yaw` in jitter mode (docs/method.md §3's
    misalignment, simulated); flip mode is chosen over the whole plan (`flipped_views`)."""
    if config.pose_noise_mode != "jitter":
        return float(yaw)
    if abs(yaw) < config.confident_yaw or rng.uniform() >= config.pose_noise:
        return float(yaw)
    out = yaw + rng.uniform(-config.pose_noise_degrees, config.pose_noise_degrees)
    return float((out + 180.0) % 360.0 - 180.0)


def mirrored_yaw(yaw: float) -> float:
    """The front-back mirror of a yaw: 180° becomes 0° (the face), 120° becomes 60°."""
    return float((180.0 - yaw + 180.0) % 360.0 - 180.0)


def flipped_views(yaws: np.ndarray, config: ProceduralBackendConfig, seed: int) -> np.ndarray:
    """Flip mode: the indices of exactly round(pose_noise × n) of the n non-confident views
    (|yaw| ≥ confident_yaw), drawn from `seed` (the same plan → the same views)."""
    candidates = np.flatnonzero(np.abs(yaws) >= config.confident_yaw)
    count = int(round(config.pose_noise * len(candidates)))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=count, replace=False)) if count else candidates[:0]
