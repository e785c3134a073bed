"""The tri-plane decoder MLP: mean plane feature → density + colour features (EG3D's OSGDecoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_platform.models.eg3d.layers import EqualLinear


class TriPlaneDecoder(nn.Module):
    """features: (B, N, C) → sigma: (B, N, 1) raw density, rgb: (B, N, out_features).

    The first 3 output features are colour (in [0, 1] up to a small margin, as in EG3D).
    """

    def __init__(self, in_features: int, hidden: int = 64, out_features: int = 32):
        super().__init__()
        self.hidden = EqualLinear(in_features, hidden)
        self.out = EqualLinear(hidden, 1 + out_features)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(F.softplus(self.hidden(features)))
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
        return x[..., :1], rgb
