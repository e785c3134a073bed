"""Fine and coarse view bins of (yaw, pitch): the pose labels of the coarse-to-fine discriminator.

docs/method.md §3: fine = many yaw × pitch bins, coarse = the 4 basic directions. Bins are centred on
yaw 0, so coarse bin 0 is the front [−45°, 45°), 1 the left side (camera at +x), 2 the back, 3 the
right side.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from avatar_platform.core.config import StrictConfig

COARSE_VIEW_NAMES = ("front", "left", "back", "right")


class ViewBinConfig(StrictConfig):
    """How (yaw, pitch) is quantised into pose labels."""

    fine_yaw_bins: int = Field(12, ge=1, description="yaw bins of the fine label")
    fine_pitch_bins: int = Field(3, ge=1, description="pitch bins of the fine label")
    coarse_yaw_bins: int = Field(4, ge=1, description="yaw bins of the coarse label (4 directions)")
    coarse_pitch_bins: int = Field(1, ge=1, description="pitch bins of the coarse label")
    pitch_range: tuple[float, float] = Field(
        (-30.0, 30.0), description="pitch range (degrees) split into the pitch bins"
    )


def yaw_bin(yaw_deg, bins: int):
    """Yaw (degrees, any range) → bin index in [0, bins), bin 0 centred on the front."""
    width = 360.0 / bins
    return (np.floor(np.mod(np.asarray(yaw_deg) + width / 2.0, 360.0) / width)).astype(np.int64) % bins


def pitch_bin(pitch_deg, bins: int, pitch_range: tuple[float, float]):
    """Pitch (degrees) → bin index in [0, bins); values outside the range go to the end bins."""
    low, high = pitch_range
    fraction = (np.asarray(pitch_deg, dtype=np.float64) - low) / max(high - low, 1e-9)
    return np.clip(np.floor(fraction * bins), 0, bins - 1).astype(np.int64)


def coarse_view_bin(yaw_deg) -> np.ndarray:
    """The dataset's `view_bin`: 0 front, 1 left, 2 back, 3 right."""
    return yaw_bin(yaw_deg, len(COARSE_VIEW_NAMES))


def view_name(view_bin: int) -> str:
    return COARSE_VIEW_NAMES[int(view_bin)]


def one_hot_pose_label(yaw_deg, pitch_deg, yaw_bins: int, pitch_bins: int, pitch_range):
    """(N, yaw_bins + pitch_bins) float32: one-hot yaw ‖ one-hot pitch."""
    yaw_idx = np.atleast_1d(yaw_bin(yaw_deg, yaw_bins))
    pitch_idx = np.atleast_1d(pitch_bin(pitch_deg, pitch_bins, pitch_range))
    label = np.zeros((len(yaw_idx), yaw_bins + pitch_bins), dtype=np.float32)
    label[np.arange(len(yaw_idx)), yaw_idx] = 1.0
    label[np.arange(len(yaw_idx)), yaw_bins + pitch_idx] = 1.0
    return label


def pose_labels(yaw_deg, pitch_deg, config: ViewBinConfig) -> tuple[np.ndarray, np.ndarray]:
    """The fine and coarse one-hot labels of docs/method.md §3, each (N, yaw_bins + pitch_bins)."""
    fine = one_hot_pose_label(
        yaw_deg, pitch_deg, config.fine_yaw_bins, config.fine_pitch_bins, config.pitch_range
    )
    coarse = one_hot_pose_label(
        yaw_deg, pitch_deg, config.coarse_yaw_bins, config.coarse_pitch_bins, config.pitch_range
    )
    return fine, coarse
