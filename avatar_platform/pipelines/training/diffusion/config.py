"""The config of `avatar-platform train diffusion` (section `diffusion` of a preset)."""

from __future__ import annotations

from pydantic import Field

from avatar_platform.models.style_diffusion.denoiser import StyleDenoiserConfig
from avatar_platform.models.style_diffusion.encoders import ImageEncoderConfig
from avatar_platform.models.style_diffusion.schedule import DiffusionScheduleConfig
from avatar_platform.pipelines.training.job_config import TrainingJobConfig


class DiffusionTrainingConfig(TrainingJobConfig):
    """Image encoder, denoiser, schedule and training of the style-space diffusion (METHOD §4).

    Pairs (w, frontal render) are drawn on the fly from the generator's EMA weights."""

    encoder: ImageEncoderConfig = Field(default_factory=ImageEncoderConfig)
    denoiser: StyleDenoiserConfig = Field(default_factory=StyleDenoiserConfig)
    schedule: DiffusionScheduleConfig = Field(default_factory=DiffusionScheduleConfig)
    batch_size: int = Field(64, ge=1, description="pairs per step, over all workers")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    p_drop: float = Field(0.1, ge=0, le=1, description="P(condition dropped) for guidance")
    truncation_psi: float = Field(1.0, ge=0, le=1, description="truncation of the sampled ws")
    pair_pool: int = Field(
        0,
        ge=0,
        description="0 = fresh pairs every step; N = draw batches from N pairs kept per "
        "worker (renders are most of a CPU step)",
    )
    pool_refresh: int = Field(4, ge=0, description="pool pairs replaced by fresh ones per step")
    w_stats_samples: int = Field(2048, ge=2, description="ws that set w's mean and std")
    eval_pairs: int = Field(32, ge=0, description="held-out pairs evaluated at the end")
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (0 = at the end)")
    checkpoint_every: int = Field(200, ge=1, description="checkpoint every N steps")
