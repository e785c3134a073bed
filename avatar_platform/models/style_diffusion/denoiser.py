"""The w-space denoiser: a small transformer in the spirit of the unCLIP prior.

Tokens: the condition embedding, the timestep, the noisy w and a learned query; the query's
output is the prediction (the clean w or the noise, see schedule.py). w is normalised by its mean and std over the generator's
distribution (buffers saved with the weights), so one schedule fits any generator.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from pydantic import Field, model_validator
from torch import nn

from avatar_platform.core.config import StrictConfig
from avatar_platform.models.checkpoint import load_module, save_module


class StyleDenoiserConfig(StrictConfig):
    """Sizes of the denoiser; `w_dim` and `cond_dim` are filled from the generator and encoder."""

    w_dim: int = Field(512, ge=1, description="the generator's w size")
    cond_dim: int = Field(512, ge=1, description="the image embedding size")
    width: int = Field(512, ge=8, description="transformer width")
    layers: int = Field(6, ge=1, description="transformer layers")
    heads: int = Field(8, ge=1, description="attention heads")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in the transformer")

    @model_validator(mode="after")
    def _heads(self) -> StyleDenoiserConfig:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must divide by heads {self.heads}")
        return self


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer or float timesteps → (B, dim) sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / max(half, 1))
    angles = t.float()[:, None] * freqs[None]
    out = torch.cat([angles.cos(), angles.sin()], dim=1)
    return nn.functional.pad(out, (0, dim - out.shape[1]))


class StyleDenoiser(nn.Module):
    """f(w_t, t, y): w_t (B, w_dim) normalised, t (B,), cond (B, cond_dim) or None → (B, w_dim)."""

    def __init__(self, config: StyleDenoiserConfig):
        super().__init__()
        self.config = config
        d = config.width
        self.w_in = nn.Linear(config.w_dim, d)
        self.cond_in = nn.Linear(config.cond_dim, d)
        self.time_in = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        # the "no condition" of classifier-free guidance is a learned embedding
        self.null_cond = nn.Parameter(torch.zeros(config.cond_dim))
        self.query = nn.Parameter(torch.randn(d) * 0.02)
        self.positions = nn.Parameter(torch.randn(4, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 4 * d, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, config.w_dim)
        self.register_buffer("w_mean", torch.zeros(config.w_dim))
        self.register_buffer("w_std", torch.ones(config.w_dim))

    def set_w_statistics(self, ws: torch.Tensor) -> None:
        """Normalise by the mean and std of sample ws (N, w_dim) of the generator."""
        with torch.no_grad():
            self.w_mean.copy_(ws.mean(dim=0))
            self.w_std.copy_(ws.std(dim=0).clamp(min=1e-4))

    def normalize(self, w: torch.Tensor) -> torch.Tensor:
        return (w - self.w_mean) / self.w_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w_std + self.w_mean

    def forward(
        self,
        w_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`cond` None = unconditional; `drop` (B,) bool replaces some conditions by the null."""
        batch = w_t.shape[0]
        if w_t.shape[1:] != (self.config.w_dim,):
            raise ValueError(f"w_t must be (B, {self.config.w_dim}), got {tuple(w_t.shape)}")
        null = self.null_cond.expand(batch, -1)
        if cond is None:
            cond = null
        elif cond.shape != (batch, self.config.cond_dim):
            raise ValueError(f"cond must be ({batch}, {self.config.cond_dim}), got {tuple(cond.shape)}")
        if drop is not None:
            cond = torch.where(drop[:, None], null, cond)
        t = t.expand(batch) if t.dim() == 0 else t
        tokens = (
            torch.stack(
                [
                    self.cond_in(cond),
                    self.time_in(timestep_embedding(t, self.config.width)),
                    self.w_in(w_t),
                    self.query.expand(batch, -1),
                ],
                dim=1,
            )
            + self.positions
        )
        return self.out(self.norm(self.transformer(tokens)[:, -1]))

    def save_pretrained(self, folder: str | Path, name: str = "style_denoiser") -> None:
        save_module(self, self.config, Path(folder), name)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, name: str = "style_denoiser", map_location: str = "cpu"
    ) -> StyleDenoiser:
        return load_module(cls, StyleDenoiserConfig, Path(folder), name, map_location)
