"""The pieces of EG3D's training step as plain functions (no Ray): augmentation, blur, R1,
density regularisation, EMA, and gradient averaging across data-parallel workers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mirror_cameras(camera: torch.Tensor) -> torch.Tensor:
    """(B, 25) cameras of horizontally mirrored images: world x → −x (yaw → −yaw)."""
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=camera.dtype, device=camera.device))
    cam2world = flip @ camera[:, :16].reshape(-1, 4, 4) @ flip
    return torch.cat([cam2world.reshape(-1, 16), camera[:, 16:]], dim=1)


def mirror_augment(image, yaw, camera, generator: torch.Generator | None = None):
    """Flip a random half of the batch horizontally, with their yaw and camera."""
    flip = torch.rand(image.shape[0], generator=generator).to(image.device) < 0.5
    image = torch.where(flip[:, None, None, None], image.flip(-1), image)
    yaw = torch.where(flip, -yaw, yaw)
    camera = torch.where(flip[:, None], mirror_cameras(camera), camera)
    return image, yaw, camera


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, C, H, W) with `sigma` pixels (the D input blur that fades out)."""
    if sigma <= 0.5:
        return images
    radius = min(int(math.ceil(sigma * 3)), images.shape[-1] // 2 - 1)
    if radius < 1:
        return images
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    out = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(out, horizontal.transpose(2, 3), groups=channels)


def blur_sigma(kimg: float, initial: float, fade_kimg: float) -> float:
    if fade_kimg <= 0:
        return 0.0
    return initial * max(1.0 - kimg / fade_kimg, 0.0)


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Real images at the neural rendering resolution (the dual discriminator's raw input)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def r1_penalty(logits: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Per-sample squared gradient norm of D's logits w.r.t. its real inputs (B,)."""
    grads = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return sum(g.square().flatten(1).sum(dim=1) for g in grads)


def density_l1(
    density_fn,
    ws: torch.Tensor,
    box_warp: float,
    points: int,
    perturb: float,
    generator: torch.Generator | None = None,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    """EG3D's density regularisation: L1 between densities at random points and perturbed
    copies, which smooths the density field. `where`: those point pairs (B, 2·points, 3), drawn
    beforehand by `density_points`; else drawn from `generator`."""
    if where is None:
        where = density_points(ws.shape[0], points, box_warp, perturb, generator)
    sigma = density_fn(ws, where.to(ws.device))
    return (sigma[:, :points] - sigma[:, points:]).abs().mean()


def density_points(
    batch: int, points: int, box_warp: float, perturb: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, 2·points, 3): random points in the box, then a perturbed copy of each."""
    p = (torch.rand(batch, points, 3, generator=generator) * 2 - 1) * (box_warp / 2)
    q = p + torch.randn(p.shape, generator=generator) * perturb
    return torch.cat([p, q], dim=1)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def ema_beta(batch_size: int, half_life_kimg: float) -> float:
    """Per-step EMA decay for a half-life in thousands of images (EG3D: 10 kimg)."""
    if half_life_kimg <= 0:
        return 0.0
    return 0.5 ** (batch_size / (half_life_kimg * 1000.0))


def average_gradients(module: torch.nn.Module, world_size: int) -> None:
    """All-reduce the gradients of every parameter (missing ones as zeros) and average them.

    Data parallelism by hand rather than DistributedDataParallel: the GAN step calls several
    sub-networks outside `forward` (mapping, density, R1's double backward), which DDP's reducer
    does not follow; one flat all-reduce per optimiser step is what DDP would do anyway.
    """
    if world_size <= 1:
        return
    import torch.distributed as dist

    params = list(module.parameters())
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
