"""Does the super-resolution draw a rim round the avatar? One number a person can read beside FID.

- rim: in the band of pixels along the silhouette (those within one pixel of where the opacity
  crosses 0.5), how far the final picture goes outside the range of the picture it was
  super-resolved from: the neural render upsampled, the minimum and maximum of its 5×5
  neighbourhood. Mean over the band's pixels and channels, in the images' [-1, 1] units.
  Sharpening an edge stays inside that range; a bright or dark ring along the silhouette, which a
  person sees as a halo, goes outside it.
- rim_data: the same measure of the dataset's own pictures, against their own versions at the
  neural-rendering resolution, in their masks' band: what the shading and sharp edges of real
  pictures score (the floor a generator can aim at).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avatar_platform.pipelines.evaluation.colour import OPAQUE

NEIGHBOURHOOD = 5


def silhouette_band(mask: torch.Tensor) -> torch.Tensor:
    """mask (B, 1, R, R) in [0, 1] → bool (B, 1, R, R): the pixels within one pixel of the edge
    between opaque (> 0.5) and empty."""
    inside = (mask > OPAQUE).float()
    return F.max_pool2d(inside, 3, 1, 1) != -F.max_pool2d(-inside, 3, 1, 1)


def overshoot(image: torch.Tensor, low: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(sum, count) of how far `image` (B, 3, R, R) lies outside the local range of `low`
    (B, 3, r, r) upsampled to R, over the silhouette band of `mask` (B, 1, R, R) and channels."""
    size = image.shape[-2:]
    up = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    pad = NEIGHBOURHOOD // 2
    high = F.max_pool2d(up, NEIGHBOURHOOD, 1, pad)
    floor = -F.max_pool2d(-up, NEIGHBOURHOOD, 1, pad)
    outside = (image - high).clamp_min(0) + (floor - image).clamp_min(0)
    band = silhouette_band(mask).expand_as(image)
    return float(outside[band].sum()), int(band.sum())


def result_overshoot(result: dict) -> tuple[float, int]:
    """(sum, count) of one batch of G's outputs: its pictures against its own neural renders,
    in the band of its own opacity brought to the pictures' size (rim = sum / count over batches)."""
    image = result["image"].float()
    opacity = F.interpolate(
        result["opacity"].float(), size=image.shape[-2:], mode="bilinear", align_corners=False
    )
    return overshoot(image, result["image_raw"].float(), opacity)


def data_rim(images: np.ndarray, masks: np.ndarray, resolution: int) -> float:
    """rim_data of images (N, H, W, 3) or (N, 3, H, W) uint8 with masks (N, H, W) bool, against
    their own versions at `resolution` (antialiased)."""
    image = torch.as_tensor(np.asarray(images)).float()
    if image.shape[-1] == 3:
        image = image.permute(0, 3, 1, 2)
    image = image / 127.5 - 1.0
    mask = torch.as_tensor(np.asarray(masks, bool)).float()[:, None]
    low = F.interpolate(
        image, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
    )
    total, count = overshoot(image, low, mask)
    return total / count if count else float("nan")
