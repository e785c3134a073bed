"""Super-resolution: the neural render (raw RGB + features) → the final image (EG3D §3.3).

Like EG3D, the input is first resized to a fixed `input_resolution`, so that changing the neural
rendering resolution (64² → 128² fine-tuning) keeps the same network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avatar_platform.models.eg3d.layers import ModulatedConv, SynthesisBlock, ToRGB


class SuperResolution(nn.Module):
    """rgb (B, 3, r, r), features (B, C, r, r), w (B, w_dim) → image (B, 3, R, R)."""

    def __init__(
        self,
        in_channels: int,
        w_dim: int,
        input_resolution: int,
        img_resolution: int,
        channels: int,
        img_channels: int = 3,
    ):
        super().__init__()
        ups = int(math.log2(img_resolution // input_resolution))
        if input_resolution * 2**ups != img_resolution:
            raise ValueError(
                f"img_resolution {img_resolution} must be input_resolution {input_resolution} times a power of two"
            )
        self.input_resolution = input_resolution
        self.stem = ModulatedConv(in_channels, channels, w_dim)
        self.blocks = nn.ModuleList(
            SynthesisBlock(channels, channels, w_dim, img_channels, first=False, resolution=0)
            for _ in range(ups)
        )
        self.torgb = ToRGB(channels, img_channels, w_dim) if ups == 0 else None

    def forward(self, rgb: torch.Tensor, features: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        size = (self.input_resolution, self.input_resolution)
        if features.shape[-1] != self.input_resolution:
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
            features = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        x = self.stem(features, w)
        img = rgb
        ws = w[:, None].expand(-1, SynthesisBlock.num_ws, -1)
        for block in self.blocks:
            x, img = block(x, img, ws)
        if self.torgb is not None:
            img = img + self.torgb(x, w)
        return img
