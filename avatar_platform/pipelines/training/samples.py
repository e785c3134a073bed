"""Sample grids of a generator at fixed seeds: rows = seeds, columns = front / side / back views."""

from __future__ import annotations

import numpy as np
import torch

from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles

GRID_YAWS = (0.0, 90.0, 180.0, -90.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) uint8."""
    return (
        ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    )


def cameras(yaws, pitch: float = 0.0, camera: CameraConfig | None = None) -> torch.Tensor:
    camera = camera or CameraConfig()
    return torch.tensor(np.stack([camera_from_angles(float(y), pitch, camera) for y in yaws]))


@torch.no_grad()
def view_grid(generator, seeds: list[int], yaws=GRID_YAWS, truncation_psi: float = 1.0,
              pitch: float = 0.0) -> np.ndarray:  # fmt: skip
    """(rows·R, cols·R, 3) uint8: one row per seed, one column per yaw."""
    device = next(generator.parameters()).device
    rows = []
    for seed in seeds:
        z = torch.randn(1, generator.config.z_dim, generator=torch.Generator().manual_seed(seed))
        z = z.expand(len(yaws), -1).to(device)
        c = cameras(yaws, pitch).to(device, torch.float32)
        # the mapping always sees the frontal camera: identity independent of the view
        ws = generator.map(z, cameras([0.0] * len(yaws)).to(device, torch.float32), truncation_psi)
        rows.append(np.concatenate(list(to_uint8(generator.synthesis(ws, c)["image"])), axis=1))
    return np.concatenate(rows, axis=0)
