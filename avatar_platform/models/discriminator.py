"""EG3D's dual discriminator with the coarse-to-fine pose condition of StyleAvatar3D (docs/method.md §3).

The discriminator sees the super-resolved image and the upsampled raw render (6 channels), with
`mask_channel` also the foreground mask (PanoHead's foreground-aware tri-discriminator: real masks
for real images, the generator's opacity for fakes), and is conditioned on a pose label projected
through a small mapping network. Label modes — the paper's
ablation: `coarse-to-fine` (default), `fine`, `coarse`, `camera` (EG3D's 25 numbers) and `none`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.checkpoint import checkpoint

from avatar_platform.core.config import StrictConfig
from avatar_platform.models.checkpoint import load_module, save_module
from avatar_platform.models.eg3d.layers import EqualConv2d, EqualLinear

ConditioningMode = Literal["coarse-to-fine", "fine", "coarse", "camera", "none"]


class PoseConditioningConfig(StrictConfig):
    """How a (yaw, pitch) becomes the discriminator's label (docs/method.md §3)."""

    mode: ConditioningMode = Field("coarse-to-fine", description="the discriminator's condition")
    fine_yaw_bins: int = Field(12, ge=1, description="yaw bins of the fine label")
    fine_pitch_bins: int = Field(3, ge=1, description="pitch bins of the fine label")
    coarse_yaw_bins: int = Field(4, ge=1, description="yaw bins of the coarse label")
    coarse_pitch_bins: int = Field(1, ge=1, description="pitch bins of the coarse label")
    pitch_range: tuple[float, float] = Field((-30.0, 30.0), description="pitch range, degrees")
    confident_yaw: float = Field(45.0, ge=0, le=180, description="|yaw| below this is confident")
    p_high: float = Field(0.9, ge=0, le=1, description="P(keep fine) for confident views")
    p_low: float = Field(0.1, ge=0, le=1, description="P(keep fine) for the other views")

    @property
    def fine_dim(self) -> int:
        return self.fine_yaw_bins + self.fine_pitch_bins

    @property
    def coarse_dim(self) -> int:
        return self.coarse_yaw_bins + self.coarse_pitch_bins

    @property
    def label_dim(self) -> int:
        return {
            "coarse-to-fine": self.fine_dim + self.coarse_dim,
            "fine": self.fine_dim,
            "coarse": self.coarse_dim,
            "camera": 25,
            "none": 0,
        }[self.mode]


def _one_hot_bins(
    yaw: torch.Tensor, pitch: torch.Tensor, yaw_bins: int, pitch_bins: int, pitch_range: tuple[float, float]
) -> torch.Tensor:
    """(B,) degrees → (B, yaw_bins + pitch_bins) one-hot yaw ‖ one-hot pitch; yaw bin 0 is
    centred on the front (the same bins as pipelines.poses.view_bins)."""
    width = 360.0 / yaw_bins
    yaw_idx = torch.floor(torch.remainder(yaw + width / 2, 360.0) / width).long() % yaw_bins
    low, high = pitch_range
    pitch_idx = torch.floor((pitch - low) / max(high - low, 1e-9) * pitch_bins).long()
    pitch_idx = pitch_idx.clamp(0, pitch_bins - 1)
    return torch.cat([F.one_hot(yaw_idx, yaw_bins), F.one_hot(pitch_idx, pitch_bins)], 1).float()


def pose_label(
    yaw: torch.Tensor,
    pitch: torch.Tensor,
    camera: torch.Tensor,
    config: PoseConditioningConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The discriminator label (B, label_dim) of images at (yaw, pitch) degrees / camera (B, 25).

    coarse-to-fine: fine ‖ coarse, of which one is zeroed per sample — confident (near-frontal)
    views keep the fine label with probability p_high, the others with p_low.
    """
    if config.mode == "none":
        return camera.new_zeros(camera.shape[0], 0)
    if config.mode == "camera":
        return camera
    fine = _one_hot_bins(yaw, pitch, config.fine_yaw_bins, config.fine_pitch_bins, config.pitch_range)
    coarse = _one_hot_bins(yaw, pitch, config.coarse_yaw_bins, config.coarse_pitch_bins, config.pitch_range)
    if config.mode == "fine":
        return fine
    if config.mode == "coarse":
        return coarse
    wrapped = torch.remainder(yaw + 180.0, 360.0) - 180.0
    p_fine = torch.where(
        wrapped.abs() < config.confident_yaw,
        torch.full_like(yaw, config.p_high),
        torch.full_like(yaw, config.p_low),
    )
    draw = torch.rand(yaw.shape[0], generator=generator).to(yaw.device)  # CPU generator
    keep_fine = (draw < p_fine).float()[:, None]
    return torch.cat([fine * keep_fine, coarse * (1 - keep_fine)], dim=1)


class DiscriminatorConfig(StrictConfig):
    """Sizes of the discriminator; defaults are EG3D's."""

    img_resolution: int = Field(512, ge=4, description="side of the images it judges")
    channel_base: int = Field(32768, ge=16, description="channel base")
    channel_max: int = Field(512, ge=4, description="channel cap")
    cmap_dim: int = Field(128, ge=1, description="size of the projected condition")
    mbstd_group_size: int = Field(4, ge=1, description="minibatch-stddev group")
    mask_channel: bool = Field(
        False, description="also judge the foreground mask (real) / the opacity (fake)"
    )
    conditioning: PoseConditioningConfig = Field(default_factory=PoseConditioningConfig)


class DiscriminatorBlock(nn.Module):
    """Residual block: conv, conv + ×2 down, with a 1×1 down-sampled skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, activation="linear", down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) / math.sqrt(2)


class DualDiscriminator(nn.Module):
    """image (B, 3, R, R) + image_raw (B, 3, r, r) [+ mask (B, 1, r', r') in [-1, 1]] + label
    (B, label_dim) → logits (B, 1)."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        # activation checkpointing of the residual blocks: a training-time memory setting
        # (gan.memory.checkpoint_discriminator), not part of the saved model
        self.checkpoint_blocks = False
        res = config.img_resolution
        if res & (res - 1):
            raise ValueError(f"img_resolution must be a power of two, got {res}")
        resolutions = [2**i for i in range(int(math.log2(res)), 2, -1)]
        channels = {r: min(config.channel_base // r, config.channel_max) for r in [*resolutions, 4]}
        self.from_rgb = EqualConv2d(7 if config.mask_channel else 6, channels[res], 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(channels[r], channels[r // 2]) for r in resolutions)
        top = channels[4]
        self.conv = EqualConv2d(top + 1, top, 3)
        self.fc = EqualLinear(top * 16, top, activation="lrelu")
        label_dim = config.conditioning.label_dim
        self.out = EqualLinear(top, config.cmap_dim if label_dim else 1)
        self.label_mapping = (
            nn.Sequential(
                EqualLinear(label_dim, config.cmap_dim, activation="lrelu"),
                EqualLinear(config.cmap_dim, config.cmap_dim),
            )
            if label_dim
            else None
        )

    def _minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = min(self.config.mbstd_group_size, batch)
        while batch % group:
            group -= 1
        # groups of consecutive samples, so that D judges a micro-batch (gan.memory.micro_batch)
        # whose size is a multiple of the group exactly as it judges the whole batch
        y = x.reshape(-1, group, channels, height, width)
        y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / group,)
        y = y.repeat_interleave(group).reshape(-1, 1, 1, 1).expand(-1, 1, height, width)
        return torch.cat([x, y], dim=1)

    def forward(
        self,
        image: torch.Tensor,
        image_raw: torch.Tensor,
        label: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        res = self.config.img_resolution
        if image.shape[1:] != (3, res, res):
            raise ValueError(f"image must be (B, 3, {res}, {res}), got {tuple(image.shape)}")
        if (mask is not None) != self.config.mask_channel:
            raise ValueError(
                "this discriminator judges a mask channel: pass mask (B, 1, r, r)"
                if self.config.mask_channel
                else "this discriminator has no mask channel (discriminator.mask_channel: false)"
            )
        inputs = [image, _to_size(image_raw, res)]
        if mask is not None:
            if mask.shape[1] != 1:
                raise ValueError(f"mask must be (B, 1, r, r), got {tuple(mask.shape)}")
            inputs.append(_to_size(mask, res))
        x = self.from_rgb(torch.cat(inputs, dim=1))
        for block in self.blocks:
            if self.checkpoint_blocks and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)  # R1's double backward goes through
            else:
                x = block(x)
        x = self.conv(self._minibatch_std(x))
        x = self.out(self.fc(x.flatten(1)))
        if self.label_mapping is None:
            return x
        cmap = self.label_mapping(label)
        return (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.config.cmap_dim)

    def save_pretrained(self, folder: str | Path, name: str = "discriminator") -> None:
        save_module(self, self.config, Path(folder), name)

    @classmethod
    def from_pretrained(cls, folder: str | Path, name: str = "discriminator", map_location="cpu"):
        return load_module(cls, DiscriminatorConfig, Path(folder), name, map_location)


def _to_size(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
