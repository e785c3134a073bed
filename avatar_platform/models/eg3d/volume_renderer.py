"""Rays from EG3D cameras, stratified + importance sampling, and alpha compositing.

Cameras follow docs/camera_conventions.md: cam2world (4×4, OpenCV axes) ‖ normalised intrinsics.
Depth samples lie between `ray_start` and `ray_end` along each ray (EG3D: 2.25–3.3 at radius 2.7).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def camera_rays(camera: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """camera: (B, 25) → origins (B, R², 3), unit directions (B, R², 3) through pixel centres,
    row-major (the same rays as pipelines.poses.camera.camera_rays)."""
    batch = camera.shape[0]
    cam2world = camera[:, :16].reshape(batch, 4, 4)
    k = camera[:, 16:].reshape(batch, 3, 3)
    centres = (torch.arange(resolution, device=camera.device, dtype=camera.dtype) + 0.5) / resolution
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    u, v = u.reshape(1, -1), v.reshape(1, -1)
    x = (u - k[:, 0, 2:3]) / k[:, 0, 0:1]
    y = (v - k[:, 1, 2:3]) / k[:, 1, 1:2]
    dirs = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (B, R², 3) camera space
    dirs = F.normalize(dirs, dim=-1) @ cam2world[:, :3, :3].transpose(1, 2)
    origins = cam2world[:, None, :3, 3].expand_as(dirs)
    return origins, dirs


def _uniform(shape: tuple[int, ...], device, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) on `device`, drawn from `generator` wherever that generator lives: training draws
    from one CPU generator, so a seed gives the same samples on CPU and GPU."""
    device = torch.device(device)
    if generator is None or generator.device == device:
        return torch.rand(shape, device=device, generator=generator)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def stratified_depths(
    batch: int,
    rays: int,
    samples: int,
    ray_start: float,
    ray_end: float,
    device,
    perturb: bool,
    generator: torch.Generator | None = None,
    offset: torch.Tensor | None = None,
):
    """(B, N, S, 1) depths: S evenly spaced bins, a random point in each when `perturb` (at
    `offset` (B, N, S, 1) in [0, 1) when given, else drawn from `generator`)."""
    edges = torch.linspace(ray_start, ray_end, samples + 1, device=device)
    width = (ray_end - ray_start) / samples
    if not perturb:
        offset = torch.full((batch, rays, samples, 1), 0.5, device=device)
    elif offset is None:
        offset = _uniform((batch, rays, samples, 1), device, generator)
    return edges[:-1].reshape(1, 1, samples, 1) + offset * width


def composite(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor):
    """Alpha-composite samples along rays (EG3D's ray marcher, on interval midpoints).

    colors (B, N, S, C), densities (B, N, S, 1) raw, depths (B, N, S, 1) sorted →
    rgb (B, N, C), depth (B, N, 1), weights (B, N, S-1, 1), opacity (B, N, 1).
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-F.softplus(densities_mid - 1) * deltas)
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=2), dim=2
    )[:, :, :-1]
    weights = alpha * transmittance
    opacity = weights.sum(dim=2)
    rgb = (weights * colors_mid).sum(dim=2)
    depth = (weights * depths_mid).sum(dim=2) / opacity.clamp_min(1e-8)
    depth = torch.nan_to_num(depth, nan=float("inf")).clamp(depths.min(), depths.max())
    return rgb, depth, weights, opacity


def importance_depths(
    depths: torch.Tensor,
    weights: torch.Tensor,
    samples: int,
    perturb: bool,
    generator: torch.Generator | None = None,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inverse-CDF samples (B, N, samples, 1) from the coarse weights (B, N, S-1, 1); when
    `perturb`, at the quantiles `u` (B, N, samples) when given, else drawn from `generator`."""
    batch, rays = depths.shape[:2]
    mids = ((depths[:, :, 1:] + depths[:, :, :-1]) / 2).reshape(batch * rays, -1)
    w = weights.reshape(batch * rays, -1)[:, 1:-1] + 1e-5  # EG3D smooths the weights
    w = F.max_pool1d(w[:, None], 2, 1, padding=1).squeeze(1)
    w = F.avg_pool1d(w[:, None], 2, 1).squeeze(1) + 0.01
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)
    if perturb and u is not None:
        u = u.reshape(batch * rays, samples)
    elif perturb:
        u = _uniform((batch * rays, samples), depths.device, generator)
    else:
        u = torch.linspace(0, 1, samples, device=depths.device).expand(batch * rays, samples)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=cdf.shape[-1] - 1)
    cdf_b, cdf_a = torch.gather(cdf, 1, below), torch.gather(cdf, 1, above)
    bins = mids[:, : cdf.shape[-1]]
    bin_b, bin_a = torch.gather(bins, 1, below), torch.gather(bins, 1, above)
    denom = torch.where(cdf_a - cdf_b < 1e-5, torch.ones_like(cdf_a), cdf_a - cdf_b)
    out = bin_b + (u - cdf_b) / denom * (bin_a - bin_b)
    return out.reshape(batch, rays, samples, 1)


FieldFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def render_rays(
    field: FieldFn,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    *,
    depth_samples: int,
    importance_samples: int,
    ray_start: float,
    ray_end: float,
    perturb: bool = False,
    generator: torch.Generator | None = None,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """Render a field along rays. `field(points (B, M, 3)) → (sigma (B, M, 1), rgb (B, M, C))`.

    `noise` = (stratified offsets (B, N, S, 1), importance quantiles (B, N, I)), the random
    numbers of `perturb` drawn beforehand (`ray_noise`); without it they come from `generator`.
    Returns feature (B, N, C), depth (B, N, 1), opacity (B, N, 1).
    """
    batch, rays = origins.shape[:2]
    offset, quantiles = noise if noise is not None else (None, None)

    def evaluate(depths):
        points = origins[:, :, None] + depths * dirs[:, :, None]
        sigma, rgb = field(points.reshape(batch, -1, 3))
        samples = depths.shape[2]
        return rgb.reshape(batch, rays, samples, -1), sigma.reshape(batch, rays, samples, 1)

    depths = stratified_depths(
        batch, rays, depth_samples, ray_start, ray_end, origins.device, perturb, generator, offset
    )
    colors, densities = evaluate(depths)
    if importance_samples > 0:
        _, _, weights, _ = composite(colors, densities, depths)
        fine = importance_depths(depths, weights.detach(), importance_samples, perturb, generator, quantiles)
        fine_colors, fine_densities = evaluate(fine)
        depths = torch.cat([depths, fine], dim=2)
        colors = torch.cat([colors, fine_colors], dim=2)
        densities = torch.cat([densities, fine_densities], dim=2)
        order = torch.argsort(depths, dim=2)
        depths = torch.gather(depths, 2, order)
        colors = torch.gather(colors, 2, order.expand(-1, -1, -1, colors.shape[-1]))
        densities = torch.gather(densities, 2, order)
    rgb, depth, _, opacity = composite(colors, densities, depths)
    return rgb, depth, opacity


def ray_noise(
    batch: int, rays: int, depth_samples: int, importance_samples: int, device, generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The random numbers `render_rays(perturb=True)` draws, in the order it draws them: the same
    generator state gives the same samples whether rays are rendered at once or in chunks."""
    offset = _uniform((batch, rays, depth_samples, 1), device, generator)
    quantiles = _uniform((batch * rays, importance_samples), device, generator)
    return offset, quantiles.reshape(batch, rays, importance_samples)


def render_rays_checkpointed(
    field: FieldFn,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    *,
    chunk: int,
    perturb: bool = False,
    generator: torch.Generator | None = None,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    **sampling,
):
    """`render_rays` in chunks of `chunk` rays per image under activation checkpointing: the
    per-sample tensors (points, tri-plane features, the decoder's activations, the compositing
    weights) of a chunk are dropped after its forward and recomputed in backward, so that the
    renderer keeps only its inputs and outputs. Same results as `render_rays` for the same
    generator state (the noise is drawn once, beforehand)."""
    batch, rays = origins.shape[:2]
    if not perturb:
        noise = None
    elif noise is None:
        noise = ray_noise(
            batch, rays, sampling["depth_samples"], sampling["importance_samples"], origins.device, generator
        )
    parts = []
    for start in range(0, rays, chunk):
        window = slice(start, start + chunk)
        piece = None if noise is None else (noise[0][:, window], noise[1][:, window])
        render = partial(render_rays, field, perturb=perturb, noise=piece, **sampling)
        parts.append(checkpoint(render, origins[:, window], dirs[:, window], use_reentrant=False))
    return tuple(torch.cat(outputs, dim=1) for outputs in zip(*parts, strict=True))
