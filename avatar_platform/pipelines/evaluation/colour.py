"""Does a generator paint the dataset's colours? Two numbers a person can read beside FID.

Each picture is summarised by 6 numbers: the mean colour of its avatar and of its background
(RGB in [0, 1]; the dataset's mask, or the generator's opacity > 0.5). Then:
- colour_fd: the Fréchet distance between the real and the generated 6-D distributions (0 = the
  same mean and spread of avatar and backdrop colours; a generator that paints every avatar in
  one average colour scores high even when its FID on random features looks fine);
- colour_spread: how much the generated avatars' colours vary, as a share of how much the real
  ones do (1 = as varied; well below 1 = the seeds look alike).
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

OPAQUE = 0.5


def colour_summary(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """images (N, H, W, 3) or (N, 3, H, W) uint8/float in [0, 1], masks (N, H, W) bool →
    (N, 6): the avatar's mean RGB, then the background's (the picture's mean where one is empty)."""
    images = np.asarray(images, np.float64)
    if images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    if images.max() > 1.0:
        images = images / 255.0
    masks = np.asarray(masks, bool)
    out = np.empty((len(images), 6))
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        whole = image.reshape(-1, 3).mean(axis=0)
        out[i, :3] = image[mask].mean(axis=0) if mask.any() else whole
        out[i, 3:] = image[~mask].mean(axis=0) if (~mask).any() else whole
    return out


def result_colours(result: dict) -> np.ndarray:
    """(B, 6) colour summaries of one batch of G's outputs: its pictures, split by its own
    opacity (> 0.5) brought to the pictures' size."""
    image = ((result["image"].float().clamp(-1, 1) + 1) / 2).cpu().numpy()
    size = image.shape[-1]
    opacity = F.interpolate(
        result["opacity"].float(), size=(size, size), mode="bilinear", align_corners=False
    )
    return colour_summary(image, opacity[:, 0].cpu().numpy() > OPAQUE)


def colour_scores(real: np.ndarray, fake: np.ndarray) -> dict:
    """colour_fd and colour_spread of two (N, 6) summaries (see the module docstring)."""
    from avatar_platform.pipelines.evaluation.fid import frechet_distance

    real_spread = float(real[:, :3].std(axis=0).mean())
    fake_spread = float(fake[:, :3].std(axis=0).mean())
    return {
        "colour_fd": frechet_distance(real, fake),
        "colour_spread": fake_spread / real_spread if real_spread > 0 else float("nan"),
    }
