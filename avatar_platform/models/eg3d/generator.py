"""The tri-plane generator: z, camera → image, raw image and depth (EG3D, docs/method.md §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from avatar_platform.core.config import StrictConfig
from avatar_platform.models.checkpoint import load_module, save_module
from avatar_platform.models.eg3d.background import (
    BackgroundGenerator,
    composite_over,
    pull_push_extend,
    resize,
)
from avatar_platform.models.eg3d.decoder import TriPlaneDecoder
from avatar_platform.models.eg3d.layers import SynthesisNetwork
from avatar_platform.models.eg3d.mapping import MappingNetwork
from avatar_platform.models.eg3d.superresolution import SuperResolution
from avatar_platform.models.eg3d.triplane import sample_from_planes
from avatar_platform.models.eg3d.volume_renderer import camera_rays, render_rays, render_rays_checkpointed

CAMERA_DIM = 25


class GeneratorConfig(StrictConfig):
    """Sizes of the generator; the defaults are EG3D's (the `paper` preset)."""

    z_dim: int = Field(512, ge=1, description="latent size")
    w_dim: int = Field(512, ge=1, description="style vector size")
    mapping_layers: int = Field(2, ge=1, description="mapping network depth")
    camera_conditioning: bool = Field(True, description="condition the mapping on the camera")
    triplane_resolution: int = Field(256, ge=4, description="feature plane side")
    triplane_channels: int = Field(32, ge=1, description="channels per plane")
    triplane_depth: int = Field(1, ge=1, description="1 = tri-plane; >1 = tri-grid layers")
    channel_base: int = Field(32768, ge=16, description="StyleGAN2 channel base")
    channel_max: int = Field(512, ge=4, description="StyleGAN2 channel cap")
    decoder_hidden: int = Field(64, ge=1, description="decoder MLP width")
    decoder_features: int = Field(32, ge=3, description="decoder output features (first 3: RGB)")
    neural_rendering_resolution: int = Field(64, ge=4, description="volume-rendered image side")
    img_resolution: int = Field(512, ge=4, description="final image side")
    sr_input_resolution: int = Field(128, ge=4, description="the SR network's input side")
    sr_channels: int = Field(128, ge=4, description="SR feature channels")
    depth_samples: int = Field(48, ge=2, description="stratified samples per ray")
    importance_samples: int = Field(48, ge=0, description="importance samples per ray")
    ray_start: float = Field(2.25, gt=0, description="nearest depth sampled")
    ray_end: float = Field(3.3, gt=0, description="farthest depth sampled")
    box_warp: float = Field(1.0, gt=0, description="side of the cube the planes span")
    background: Literal["none", "stylegan2"] = Field(
        "none",
        description="none: the volume paints the backdrop too; stylegan2: a 2D StyleGAN2 branch "
        "renders it and the volume is composited over it (PanoHead), so the volume holds only "
        "the avatar",
    )
    sr_input: Literal["volume", "composite", "features", "extended"] = Field(
        "volume",
        description="with a background, what the super-resolution sees. volume: the volume's own "
        "render, with the background composited after it at both resolutions (where the "
        "opacity is partial the premultiplied colour is dimmed twice); composite: the "
        "background composited at the neural-rendering resolution first, then the whole "
        "picture super-resolved (PanoHead's order), the feature channels still the volume's "
        "alone (zero where it is empty); features: composite, and the background network "
        "paints every feature channel too, composited the same way (PanoHead's background has "
        "as many channels as the render; on the demo preset it painted a 2D ghost of the head "
        "there, BENCHMARKS.md); extended: composite, with the feature channels past colour "
        "composited over a smooth extension of the avatar's own (pull-push from its opaque "
        "pixels), so they do not step to zero at the silhouette and the background stays colour "
        "alone",
    )
    background_resolution: int = Field(32, ge=4, description="background network output side")
    background_channel_base: int = Field(1024, ge=16, description="background channel base")
    background_channel_max: int = Field(64, ge=4, description="background channel cap")

    @model_validator(mode="after")
    def _consistent(self) -> GeneratorConfig:
        if self.ray_end <= self.ray_start:
            raise ValueError("ray_end must be greater than ray_start")
        return self


class TriPlaneGenerator(nn.Module):
    """mapping → StyleGAN2 synthesis of planes → volume rendering → super-resolution."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        planes = 3 * config.triplane_channels * config.triplane_depth
        self.backbone = SynthesisNetwork(
            config.w_dim, config.triplane_resolution, planes, config.channel_base, config.channel_max
        )
        self.mapping = MappingNetwork(
            config.z_dim,
            CAMERA_DIM if config.camera_conditioning else 0,
            config.w_dim,
            self.backbone.num_ws,
            config.mapping_layers,
        )
        self.decoder = TriPlaneDecoder(
            config.triplane_channels, config.decoder_hidden, config.decoder_features
        )
        self.superresolution = SuperResolution(
            config.decoder_features,
            config.w_dim,
            config.sr_input_resolution,
            config.img_resolution,
            config.sr_channels,
        )
        self.background = (
            BackgroundGenerator(
                config.w_dim,
                config.background_resolution,
                config.background_channel_base,
                config.background_channel_max,
                config.decoder_features if config.sr_input == "features" else 3,
            )
            if config.background == "stylegan2"
            else None
        )

    # -- the parts -----------------------------------------------------------------------------
    def map(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z: (B, z_dim), c: (B, 25) → ws: (B, num_ws, w_dim)."""
        _check_shape(z, (None, self.config.z_dim), "z")
        _check_shape(c, (z.shape[0], CAMERA_DIM), "camera")
        return self.mapping(z, c if self.config.camera_conditioning else None, truncation_psi)

    def planes(self, ws: torch.Tensor) -> torch.Tensor:
        """ws → planes (B, 3, C, H, W), or (B, 3, D, C, H, W) for a tri-grid."""
        cfg = self.config
        raw = self.backbone(ws)
        batch, size = raw.shape[0], raw.shape[-1]
        if cfg.triplane_depth == 1:
            return raw.reshape(batch, 3, cfg.triplane_channels, size, size)
        return raw.reshape(batch, 3, cfg.triplane_depth, cfg.triplane_channels, size, size)

    def field(self, planes: torch.Tensor, points: torch.Tensor):
        """points (B, M, 3) → sigma (B, M, 1), features (B, M, decoder_features)."""
        return self.decoder(sample_from_planes(planes, points, self.config.box_warp))

    def density(self, ws: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Raw density (B, M, 1) at world points (meshes, density regularisation)."""
        return self.field(self.planes(ws), points)[0]

    # -- the whole -----------------------------------------------------------------------------
    def synthesis(
        self,
        ws: torch.Tensor,
        c: torch.Tensor,
        neural_rendering_resolution: int | None = None,
        perturb: bool = False,
        generator: torch.Generator | None = None,
        checkpoint_rays: int | None = None,
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict:
        """Render ws at cameras c (B, 25); with `checkpoint_rays` the renderer runs under
        activation checkpointing in chunks of that many rays (training: gan.memory); `noise`:
        `perturb`'s random numbers drawn beforehand (volume_renderer.ray_noise). Returns
        `image` (B, 3, R, R) in [-1, 1]-ish,
        `image_raw` (B, 3, r, r), `image_depth` (B, 1, r, r), `opacity` (B, 1, r, r), and with a
        background network `background` (B, 3, R, R), what shows where the volume is empty."""
        cfg = self.config
        res = neural_rendering_resolution or cfg.neural_rendering_resolution
        _check_shape(c, (ws.shape[0], CAMERA_DIM), "camera")
        planes = self.planes(ws)
        origins, dirs = camera_rays(c, res)
        sampling = {
            "depth_samples": cfg.depth_samples,
            "importance_samples": cfg.importance_samples,
            "ray_start": cfg.ray_start,
            "ray_end": cfg.ray_end,
            "perturb": perturb,
            "generator": generator,
            "noise": noise,
        }
        field = lambda pts: self.field(planes, pts)  # noqa: E731
        if checkpoint_rays and torch.is_grad_enabled():
            features, depth, opacity = render_rays_checkpointed(
                field, origins, dirs, chunk=checkpoint_rays, **sampling
            )
        else:
            features, depth, opacity = render_rays(field, origins, dirs, **sampling)
        batch = ws.shape[0]
        feature_image = features.transpose(1, 2).reshape(batch, -1, res, res)
        opacity = opacity.transpose(1, 2).reshape(batch, 1, res, res)
        out = {"image_depth": depth.transpose(1, 2).reshape(batch, 1, res, res), "opacity": opacity}
        if self.background is None:
            # decoder colours are in [0, 1]; images live in [-1, 1] like the dataset's
            raw_rgb = feature_image[:, :3] * 2 - 1
            image = self.superresolution(raw_rgb, feature_image, ws[:, -1])
            return {"image": image, "image_raw": raw_rgb, **out}
        background = self.background(ws[:, -1])
        size = cfg.img_resolution
        out["background"] = resize(background[:, :3], size)
        if cfg.sr_input in ("composite", "features", "extended"):
            # The render is premultiplied (Σ wᵢ cᵢ, with opacity Σ wᵢ), so compositing over the
            # background needs no division: α·(2c − 1) + (1 − α)·bg = 2·Σ wᵢ cᵢ − α + (1 − α)·bg.
            # The super-resolution then sees the whole picture, backdrop included, colour first;
            # with `features` the other channels are composited over the backdrop's own features,
            # with `extended` over a smooth extension of the avatar's.
            backdrop = resize(background, res)
            composited = feature_image[:, :3] * 2 - opacity + (1 - opacity) * backdrop[:, :3]
            rest = feature_image[:, 3:]
            if cfg.sr_input == "features":
                rest = rest + (1 - opacity) * backdrop[:, 3:]
            elif cfg.sr_input == "extended":
                rest = rest + (1 - opacity) * pull_push_extend(rest, opacity)
            out["image_raw"] = composited
            out["image"] = self.superresolution(composited, torch.cat([composited, rest], dim=1), ws[:, -1])
            return out
        # volume: the super-resolution sees the volume's own (premultiplied) render and learns the
        # avatar's colour from it; the background is composited at both resolutions by the
        # opacity, which is exact at α = 0 (only the background) and α = 1 (none of it).
        # Dividing the opacity out instead amplified the faint fog at the silhouette into
        # coloured fringes.
        raw_rgb = feature_image[:, :3] * 2 - 1
        colour_rgb = feature_image[:, :3] / opacity.detach().clamp_min(1e-3) * 2 - 1
        out["image_raw"] = composite_over(colour_rgb.clamp(-1.002, 1.002), opacity, resize(background, res))
        out["image"] = composite_over(
            self.superresolution(raw_rgb, feature_image, ws[:, -1]), resize(opacity, size), out["background"]
        )
        return out

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0, **render) -> dict:
        return self.synthesis(self.map(z, c, truncation_psi), c, **render)

    # -- weights -------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path, name: str = "generator") -> None:
        save_module(self, self.config, Path(folder), name)

    @classmethod
    def from_pretrained(cls, folder: str | Path, name: str = "generator", map_location="cpu"):
        return load_module(cls, GeneratorConfig, Path(folder), name, map_location)


def _check_shape(x: torch.Tensor, shape: tuple, name: str) -> None:
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape, strict=True)):
        raise ValueError(f"{name} must have shape {shape} (None = any), got {tuple(x.shape)}")


def upsample_raw(image_raw: torch.Tensor, size: int) -> torch.Tensor:
    """The raw image at the final resolution (the dual discriminator's second input)."""
    return F.interpolate(image_raw, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
