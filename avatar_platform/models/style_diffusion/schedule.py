"""The noise schedule (diffusers' DDPM for training; DDIM or DPM-Solver++ for sampling) and
classifier-free guidance: ε̂ = λ·ε(w, y) + (1 − λ)·ε(w) (docs/method.md §4).

The denoiser predicts the clean w (`prediction: sample`, as the unCLIP prior does) or the noise
(`epsilon`); guidance combines either linearly, which is the same combination of the ε that
the scheduler derives from it. Predicting w directly keeps early sampling steps stable: an ε
error at ᾱ_t ≈ 0 is divided by sqrt(ᾱ_t) when turned into w."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from avatar_platform.core.config import StrictConfig


class DiffusionScheduleConfig(StrictConfig):
    """How w is noised in training and denoised at inference."""

    num_train_timesteps: int = Field(1000, ge=10, description="DDPM timesteps")
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = Field(
        "squaredcos_cap_v2", description="DDPM beta schedule"
    )
    prediction: Literal["sample", "epsilon"] = Field(
        "sample", description="what the denoiser predicts: the clean w, or the noise"
    )
    sampler: Literal["ddim", "dpm-solver"] = Field("ddim", description="inference sampler")
    inference_steps: int = Field(25, ge=1, le=1000, description="sampling steps")
    guidance: float = Field(2.0, ge=0, le=20, description="guidance λ (0 = unconditional)")


def training_scheduler(config: DiffusionScheduleConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction,
        clip_sample=False,
    )


def inference_scheduler(config: DiffusionScheduleConfig):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    common = dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction,
    )
    if config.sampler == "dpm-solver":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", **common)
    return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)


def guided_prediction(
    denoiser, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, guidance: float
) -> torch.Tensor:
    """λ·f(x, y) + (1 − λ)·f(x) for the denoiser's output f (ε or w); λ = 1 is the conditional
    model alone, λ = 0 the unconditional."""
    if cond is None or guidance == 0:
        return denoiser(x, t, None)
    conditional = denoiser(x, t, cond)
    if guidance == 1:
        return conditional
    return guidance * conditional + (1 - guidance) * denoiser(x, t, None)


@torch.no_grad()
def sample_w(
    denoiser,
    cond: torch.Tensor | None,
    config: DiffusionScheduleConfig,
    *,
    batch: int | None = None,
    guidance: float | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """w (B, w_dim) in the generator's units, from image embeddings `cond` (B, cond_dim) or,
    with `cond` None, `batch` unconditional samples. Seeded by `generator` (a CPU generator)."""
    device = next(denoiser.parameters()).device
    size = cond.shape[0] if cond is not None else int(batch or 1)
    scheduler = inference_scheduler(config)
    scheduler.set_timesteps(steps or config.inference_steps)
    x = torch.randn(size, denoiser.config.w_dim, generator=generator).to(device)
    x = x * scheduler.init_noise_sigma
    lam = config.guidance if guidance is None else guidance
    for t in scheduler.timesteps:
        out = guided_prediction(denoiser, x, t.to(device).expand(size), cond, lam)
        x = scheduler.step(out, t, x).prev_sample
    return denoiser.denormalize(x)
