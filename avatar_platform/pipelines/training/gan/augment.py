"""Differentiable augmentation of everything the discriminator sees (StyleGAN2-ADA's idea, with
DiffAugment's three cheap transforms): translation, cutout and colour, applied alike to real and
fake inputs, with a probability that adapts to how much D overfits.

D's inputs are augmented as one stack — image ‖ upsampled raw image ‖ mask — so a sample's image,
raw image and mask move together (EG3D augments its dual images the same way); colour changes only
the RGB channels. Plain PyTorch, no Ray: `GanTrainer` calls it.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from avatar_platform.core.config import StrictConfig


class AugmentConfig(StrictConfig):
    """D augmentation (section `gan.augment`)."""

    mode: Literal["off", "fixed", "ada"] = Field(
        "off", description="off; fixed: probability `p`; ada: p adapts to D's overfitting"
    )
    p: float = Field(0.0, ge=0, le=1, description="initial (fixed: constant) probability")
    target: float = Field(0.6, gt=0, lt=1, description="ADA's target for E[sign(D(real))]")
    speed_kimg: float = Field(
        500.0, gt=0, description="ADA: kimg over which p may move from 0 to 1 (ADA: 500)"
    )
    interval: int = Field(4, ge=1, description="ADA: adjust p every N steps")
    translation: float = Field(0.125, ge=0, le=0.5, description="largest shift, share of the side")
    cutout: float = Field(0.5, ge=0, le=1, description="cutout square side, share of the side")
    color: bool = Field(True, description="brightness, saturation and contrast jitter")


def augment(
    x: torch.Tensor,
    p: float,
    config: AugmentConfig,
    rgb_channels: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """x: (B, C, H, W), of which the first `rgb_channels` are colour in [-1, 1] (groups of 3) →
    the same shape; each transform is applied to each sample with probability `p`."""
    if p <= 0:
        return x
    batch, _, height, width = x.shape

    def chosen() -> torch.Tensor:
        return (torch.rand(batch, generator=generator) < p).to(x.device)

    if config.color and rgb_channels:
        rgb, rest = x[:, :rgb_channels], x[:, rgb_channels:]
        groups = rgb.reshape(batch, rgb_channels // 3, 3, height, width)
        shape = (batch, 1, 1, 1, 1)
        brightness = (torch.rand(shape, generator=generator) - 0.5).to(x.device)
        groups = groups + torch.where(chosen().reshape(shape), brightness, 0.0)
        grey = groups.mean(dim=2, keepdim=True)
        saturation = (torch.rand(shape, generator=generator) * 2).to(x.device)
        groups = torch.where(chosen().reshape(shape), (groups - grey) * saturation + grey, groups)
        mean = groups.mean(dim=(2, 3, 4), keepdim=True)
        contrast = (torch.rand(shape, generator=generator) + 0.5).to(x.device)
        groups = torch.where(chosen().reshape(shape), (groups - mean) * contrast + mean, groups)
        x = torch.cat([groups.reshape(batch, rgb_channels, height, width), rest], dim=1)
    if config.translation > 0:
        limit = config.translation
        shift = ((torch.rand(batch, 2, generator=generator) * 2 - 1) * limit).to(x.device)
        # whole pixels, so that an untouched pixel keeps its exact value
        shift = torch.round(shift * torch.tensor([width, height], device=x.device))
        shift = torch.where(chosen()[:, None], shift, 0.0)
        x = _translate(x, shift)
    if config.cutout > 0:
        centre = torch.rand(batch, 2, generator=generator).to(x.device)
        ys = (torch.arange(height, device=x.device) + 0.5) / height
        xs = (torch.arange(width, device=x.device) + 0.5) / width
        inside_x = (xs[None] - centre[:, :1]).abs() < config.cutout / 2
        inside_y = (ys[None] - centre[:, 1:]).abs() < config.cutout / 2
        hole = inside_y[:, :, None] & inside_x[:, None, :] & chosen()[:, None, None]
        x = x * (~hole)[:, None].to(x.dtype)
    return x


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each sample by whole pixels (dx, dy) (B, 2), reflecting at the border. Gathers, not
    grid_sample: R1 differentiates D's gradient again, and a gather's backward is differentiable."""
    batch, channels, height, width = x.shape
    ys = torch.arange(height, device=x.device)
    xs = torch.arange(width, device=x.device)
    src_y = _reflect(ys[None] - shift[:, 1:].long(), height)  # (B, H)
    src_x = _reflect(xs[None] - shift[:, :1].long(), width)  # (B, W)
    x = x.gather(2, src_y[:, None, :, None].expand(batch, channels, height, width))
    return x.gather(3, src_x[:, None, None, :].expand(batch, channels, height, width))


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    period = 2 * size
    index = torch.remainder(index, period)
    return torch.where(index >= size, period - 1 - index, index)


def adjust_p(p: float, real_sign_mean: float, images: int, config: AugmentConfig) -> float:
    """ADA's update: raise p when D is too sure of the reals (E[sign(D(real))] above target)."""
    if config.mode != "ada":
        return p
    step = images / (config.speed_kimg * 1000.0)
    direction = 1.0 if real_sign_mean > config.target else -1.0
    return float(min(max(p + direction * step, 0.0), 1.0))
