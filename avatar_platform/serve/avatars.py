"""Render the avatars of served requests: pure functions over the pyfunc model, no Ray.

The model deployment hands a batch of jobs (one per seed or uploaded picture) to `render_jobs`,
which renders the views of every avatar in the batch together, then turntables and meshes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

from avatar_platform.pipelines.inference import sampling
from avatar_platform.pipelines.inference.pyfunc import AvatarRequest, StyleAvatar3DModel, png_bytes


@dataclass(frozen=True)
class AvatarJob:
    """One seed, or one uploaded picture (checked by the ingress), and how to render it."""

    seed: int | None
    image: bytes | None
    views: int
    resolution: int | None
    mesh: bool
    mesh_resolution: int
    turntable: bool
    frames: int
    truncation: float
    num_samples: int = 1
    guidance: float | None = None

    def request(self) -> AvatarRequest:
        return AvatarRequest(
            index=0,
            seed=self.seed,
            image=self.image,
            views=self.views,
            truncation=self.truncation,
            mesh=self.mesh,
            mesh_resolution=self.mesh_resolution,
            num_samples=self.num_samples,
            guidance=self.guidance,
        )


@dataclass(frozen=True)
class RenderedAvatar:
    """Encoded files of one avatar, ready to be written or sent."""

    seed: int | None
    sample: int
    views: list[bytes]  # PNG per view, front first
    views_grid: bytes  # PNG, views side by side
    turntable: bytes | None  # GIF
    mesh: bytes | None  # GLB
    mesh_faces: int | None


def _resized(image: np.ndarray, side: int | None) -> np.ndarray:
    if side is None or side == image.shape[0]:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.LANCZOS))


def _gif(frames: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    sampling.write_gif(frames, buffer)
    return buffer.getvalue()


@torch.no_grad()
def render_jobs(
    model: StyleAvatar3DModel, jobs: list[AvatarJob], chunk: int = 16
) -> list[list[RenderedAvatar]]:
    """The avatars of each job (a seed gives one, a picture `num_samples`), in job order."""
    generator = model.generator
    avatars = [
        (j, sample, ws)
        for j, job in enumerate(jobs)
        for sample, ws in enumerate(model.avatars(job.request()))
    ]
    # every view of every avatar in the batch goes through the generator together
    yaws = [sampling.view_yaws(jobs[j].views) for j, _, _ in avatars]
    ws_all = torch.cat([ws.expand(len(y), -1, -1) for (_, _, ws), y in zip(avatars, yaws, strict=True)])
    images = sampling.render_pairs(generator, ws_all, [yaw for y in yaws for yaw in y], chunk)
    out: list[list[RenderedAvatar]] = [[] for _ in jobs]
    start = 0
    for (j, sample, ws), y in zip(avatars, yaws, strict=True):
        job = jobs[j]
        views = [_resized(image, job.resolution) for image in images[start : start + len(y)]]
        start += len(y)
        mesh = model.mesh(ws, job.mesh_resolution) if job.mesh else None
        turntable = None
        if job.turntable:
            frames = [_resized(f, job.resolution) for f in sampling.turntable(generator, ws, job.frames)]
            turntable = _gif(frames)
        out[j].append(
            RenderedAvatar(
                seed=job.seed,
                sample=sample,
                views=[png_bytes(v) for v in views],
                views_grid=png_bytes(np.concatenate(views, axis=1)),
                turntable=turntable,
                mesh=mesh.export(file_type="glb") if mesh is not None else None,
                mesh_faces=len(mesh.faces) if mesh is not None else None,
            )
        )
    return out
