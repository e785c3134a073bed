"""The 2D background of a tri-plane generator (PanoHead's design): a small StyleGAN2 synthesis
network driven by the same w renders the backdrop, and the volume render is composited over it.

Without it the only way to paint a dataset's coloured backdrop is density inside the tri-plane box,
which is what made early meshes fill the box; with it the volume holds the avatar alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_platform.models.eg3d.layers import SynthesisNetwork


class BackgroundGenerator(nn.Module):
    """w (B, w_dim) → background (B, channels, r, r) in [-1, 1]-ish (no camera: a backdrop is 2D).

    The first 3 channels are the backdrop's colour; more channels paint the backdrop's features
    for the super-resolution too (PanoHead's background has as many channels as the render)."""

    def __init__(self, w_dim: int, resolution: int, channel_base: int, channel_max: int, channels: int = 3):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, resolution, channels, channel_base, channel_max)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        ws = w[:, None].expand(-1, self.synthesis.num_ws, -1)
        return self.synthesis(ws)


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, r, r) → (B, C, size, size), bilinear (identity when the size already matches)."""
    if image.shape[-1] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)


def pull_push_extend(premultiplied: torch.Tensor, opacity: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """A smooth extension of a premultiplied render (B, C, r, r) with opacity (B, 1, r, r) into
    where it is empty: each pixel's colour is the opacity-weighted mean of the render around it,
    from ever coarser levels of a ×2 pyramid (pull), brought back up bilinearly (push). Returns
    the coarse estimate (B, C, r, r), unpremultiplied; composite `premultiplied + (1 − α)·it`
    to extend the render without a step at its silhouette. An empty render extends to 0."""
    size = premultiplied.shape[-1]
    if size <= 1:
        return premultiplied / opacity.clamp_min(floor)
    pooled, weight = F.avg_pool2d(premultiplied, 2, ceil_mode=True), F.avg_pool2d(opacity, 2, ceil_mode=True)
    colour = pooled / weight.clamp_min(floor)
    coarse = pull_push_extend(pooled, weight, floor)
    # fill the coarse level the same way before bringing it up: its own colour where it is opaque
    filled = weight * colour + (1 - weight) * coarse
    return F.interpolate(filled, size=(size, size), mode="bilinear", align_corners=False)


def composite_over(foreground: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """opacity · foreground + (1 − opacity) · background, every input at the same resolution.

    foreground (B, 3, R, R) is an unpremultiplied colour, opacity (B, 1, R, R) in [0, 1]: a fully
    opaque pixel shows no background at all, an empty one shows only the background.
    """
    return opacity * foreground + (1 - opacity) * background
