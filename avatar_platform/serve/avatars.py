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
    model: StyleAvatar3DModel, jobs: list[AvatarRequest], chunk: int = 16
) -> list[list[RenderedAvatar]]:
    """The avatars of each request (a seed gives one, a picture `num_samples`), in order."""
    shared = model.generator
    avatars = [
        (j, sample, avatar)
        for j, job in enumerate(jobs)
        for sample, avatar in enumerate(model.avatar_list(job))
    ]
    # every view of every avatar the model's own generator renders goes through it together; a
    # refined avatar's tuned copy renders its own
    yaws = [sampling.view_yaws(jobs[j].views) for j, _, _ in avatars]
    batched = [i for i, (_, _, avatar) in enumerate(avatars) if avatar.generator is shared]
    rendered: dict[int, np.ndarray] = {}
    if batched:
        ws_all = torch.cat([avatars[i][2].ws.expand(len(yaws[i]), -1, -1) for i in batched])
        images = sampling.render_pairs(shared, ws_all, [yaw for i in batched for yaw in yaws[i]], chunk)
        start = 0
        for i in batched:
            rendered[i] = images[start : start + len(yaws[i])]
            start += len(yaws[i])
    for i, (_, _, avatar) in enumerate(avatars):
        if i not in rendered:
            rendered[i] = sampling.render(avatar.generator, avatar.ws, yaws[i])
    out: list[list[RenderedAvatar]] = [[] for _ in jobs]
    for i, (j, sample, avatar) in enumerate(avatars):
        job, ws, generator = jobs[j], avatar.ws, avatar.generator
        views = [_resized(image, job.resolution) for image in rendered[i]]
        mesh = model.mesh(ws, job.mesh_resolution, generator) if job.mesh else None
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
