"""Tri-plane (and tri-grid) features: sample 3D points on three axis-aligned feature planes.

Planes are xy, xz and zy (EG3D); features of the three are averaged. A tri-grid (PanoHead) gives
each plane several depth layers and samples them trilinearly, so that front and back of a 360°
head no longer share one feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (first image axis, second image axis, depth axis) of each plane, as world-axis indices
PLANE_AXES = ((0, 1, 2), (0, 2, 1), (2, 1, 0))


def sample_from_planes(planes: torch.Tensor, coords: torch.Tensor, box_warp: float) -> torch.Tensor:
    """planes: (B, 3, C, H, W) tri-plane or (B, 3, D, C, H, W) tri-grid; coords: (B, N, 3) world
    points → (B, N, C) mean feature. Points outside the box [-box_warp/2, box_warp/2]³ get 0."""
    normalized = coords * (2.0 / box_warp)  # → [-1, 1]
    batch, n = coords.shape[:2]
    features = []
    for plane, (a, b, d) in enumerate(PLANE_AXES):
        if planes.dim() == 5:
            grid = normalized[..., [a, b]].reshape(batch, 1, n, 2)
            sampled = F.grid_sample(
                planes[:, plane], grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )  # (B, C, 1, N)
        else:
            volume = planes[:, plane].permute(0, 2, 1, 3, 4)  # (B, C, D, H, W)
            grid = normalized[..., [a, b, d]].reshape(batch, 1, 1, n, 3)
            sampled = F.grid_sample(
                volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            ).squeeze(2)  # (B, C, 1, N)
        features.append(sampled.reshape(batch, -1, n).transpose(1, 2))
    return torch.stack(features, dim=0).mean(dim=0)
