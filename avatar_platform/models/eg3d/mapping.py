"""Mapping network z (+ camera c) → w, broadcast to num_ws style vectors (EG3D / StyleGAN2)."""

from __future__ import annotations

import torch
from torch import nn

from avatar_platform.models.eg3d.layers import EqualLinear


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z: (B, z_dim), c: (B, c_dim) → ws: (B, num_ws, w_dim).

    `w_avg` is the running mean of w used by truncation; a forward pass never updates it — the
    training loop calls `update_w_avg` (a forward pass changes no module state).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = EqualLinear(c_dim, w_dim) if c_dim else None
        features = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            for i in range(num_layers)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0
    ) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.c_dim:
            if c is None or c.shape[-1] != self.c_dim:
                raise ValueError(f"mapping expects c of shape (B, {self.c_dim})")
            x = torch.cat([x, normalize_2nd_moment(self.embed(c))], dim=1)
        for layer in self.layers:
            x = layer(x)
        if truncation_psi != 1.0:
            x = self.w_avg.lerp(x, truncation_psi)
        return x[:, None].expand(-1, self.num_ws, -1)

    @torch.no_grad()
    def update_w_avg(self, ws: torch.Tensor) -> None:
        """Move w_avg towards the batch mean of ws (B, num_ws, w_dim); called by training."""
        self.w_avg.copy_(ws[:, 0].mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
