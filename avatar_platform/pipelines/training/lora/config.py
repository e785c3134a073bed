"""The config of `avatar-platform train lora` (section `lora` of a preset): a character LoRA on
the Stable Diffusion UNet from a few pictures, whose token then replaces the style text in
`generate --backend controlnet --lora` (docs/method.md §1, "Characters")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from avatar_platform.core.config import StrictConfig
from avatar_platform.pipelines.training.job_config import TrainingJobConfig


class LoraAugmentationConfig(StrictConfig):
    """Light augmentation of the training pictures, drawn from the training seed."""

    hflip: float = Field(
        0.5,
        ge=0,
        le=1,
        description="probability of a horizontal flip (0 for characters with one-sided features)",
    )
    crop_scale: float = Field(
        0.9,
        gt=0,
        le=1,
        description="smallest side of a random square crop, as a share of the picture (1 = none)",
    )


class LoraTrainingConfig(TrainingJobConfig):
    """Base model, adapter shape and training of a character LoRA (diffusers' LoRA recipe)."""

    base: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        description="the Stable Diffusion 1.5 pipeline to adapt: hub id or local folder",
    )
    token: str = Field("sks", min_length=1, description="the character's name in every caption and prompt")
    rank: int = Field(16, ge=1, le=512, description="LoRA rank r")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha (None = rank: scale 1)")
    target_modules: list[str] = Field(
        ["to_k", "to_q", "to_v", "to_out.0"],
        min_length=1,
        description="UNet layers that get an adapter (the attention projections)",
    )
    train_text_encoder: bool = Field(
        False, description="also put an adapter on the CLIP text encoder's attention"
    )
    resolution: int = Field(
        512,
        ge=16,
        le=2048,
        multiple_of=8,
        description="training image side in pixels (a multiple of 8, the VAE's stride)",
    )
    batch_size: int = Field(4, ge=1, description="pictures per step, over all workers")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay (of the adapter)")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    mixed_precision: Literal["auto", "no", "fp16"] = Field(
        "auto",
        description="auto = fp16 base weights and autocast on CUDA (the adapter stays fp32), fp32 on CPU",
    )
    checkpoint_every: int = Field(250, ge=1, description="checkpoint every N steps")
    sample_every: int = Field(250, ge=0, description="sample images every N steps (0 = at the end only)")
    sample_seeds: list[int] = Field(
        [0, 1, 2, 3], description="seeds of the sample images (the same at every step)"
    )
    sample_steps: int = Field(25, ge=1, description="denoising steps of a sample image")
    augmentation: LoraAugmentationConfig = Field(default_factory=LoraAugmentationConfig)

    @field_validator("token")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = value.strip()
        if not value or "\n" in value:
            raise ValueError("the token must be a non-empty single line, e.g. 'zorb character'")
        return value

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)
