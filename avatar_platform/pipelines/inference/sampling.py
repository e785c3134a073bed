"""What users make with a generator: multi-view grids, turntables, latent walks and meshes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from avatar_platform.models.mesh import extract_mesh
from avatar_platform.pipelines.rendering import (  # noqa: F401 (the users' API, re-exported)
    FRONT,
    cameras,
    latent,
    render,
    render_pairs,
    to_uint8,
    ws_for,
    ws_for_seed,
)

# Taubin iterations of every mesh by default (sample, the registry model, serve): on a step-like
# density they halve the marching-cubes staircase's normal error (20° → 10°) and keep the volume
MESH_SMOOTH = 5


def view_yaws(views: int) -> list[float]:
    """`views` yaws evenly around the head, front first."""
    return [((360.0 * i / views) + 180.0) % 360.0 - 180.0 for i in range(views)]


def view_row(generator, ws: torch.Tensor, views: int) -> np.ndarray:
    """(R, views·R, 3) uint8: one avatar from `views` yaws side by side."""
    return np.concatenate(list(render(generator, ws, view_yaws(views))), axis=1)


def multiview_grid(generator, avatars: list[torch.Tensor], views: int) -> np.ndarray:
    """Rows = avatars (each ws (1, num_ws, w_dim)), columns = `views` yaws (front first)."""
    return np.concatenate([view_row(generator, ws, views) for ws in avatars], axis=0)


def turntable(generator, ws: torch.Tensor, frames: int) -> list[np.ndarray]:
    yaws = [-180.0 + 360.0 * i / frames for i in range(frames)]
    return list(render(generator, ws, yaws, pitch=10.0))


@torch.no_grad()
def latent_walk(
    generator, seed_a: int, seed_b: int, frames: int, truncation_psi: float, space: str = "w"
) -> list[np.ndarray]:
    """Interpolate seed_a → seed_b (in z or w) while the camera swings from −45° to 45°."""
    za, zb = latent(generator, seed_a), latent(generator, seed_b)
    wa, wb = ws_for(generator, za, truncation_psi), ws_for(generator, zb, truncation_psi)
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        if space == "z":
            ws = ws_for(generator, torch.lerp(za, zb, t), truncation_psi)
        else:
            ws = torch.lerp(wa, wb, t)
        out.append(render(generator, ws, [-45.0 + 90.0 * t])[0])
    return out


def ray_step(generator) -> float:
    """The renderer's stratified depth-sample spacing (the δ of the "auto" mesh level)."""
    cfg = generator.config
    return (cfg.ray_end - cfg.ray_start) / cfg.depth_samples


@torch.no_grad()
def mesh_for_ws(
    generator,
    ws: torch.Tensor,
    resolution: int,
    level: float | str | None = "auto",
    *,
    keep: str = "largest",
    smooth: int = MESH_SMOOTH,
    faces: int | None = None,
):
    """Marching cubes on the avatar's density in the tri-plane box, coloured by the decoder.

    level: a raw density or "auto"/None (the opacity rule of models.mesh, with this generator's
    ray step); keep, smooth, faces: models.mesh.extract_mesh's clean-up."""
    planes = generator.planes(ws)

    def density(points):
        return generator.field(planes, points[None])[0].reshape(-1)

    box = generator.config.box_warp
    step = ray_step(generator)
    mesh = extract_mesh(
        density,
        resolution,
        box,
        level,
        device=ws.device,
        ray_step=step,
        keep=keep,
        smooth=smooth,
        faces=faces,
    )
    if len(mesh.vertices):
        rgb = seen_colours(generator, planes, mesh.vertices, mesh.vertex_normals, span=step)
        alpha = np.full((len(rgb), 1), 255, np.uint8)
        mesh.visual.vertex_colors = np.concatenate([(rgb * 255 + 0.5).astype(np.uint8), alpha], axis=1)
    return mesh


SEEN_SAMPLES = 64  # samples along each vertex's short ray (seen_colours)


@torch.no_grad()
def seen_colours(generator, planes, vertices, normals, span: float, chunk: int = 8192) -> np.ndarray:
    """(V, 3) in [0, 1]: the colour a camera looking straight at each vertex sees there.

    The iso-surface lies where a ray turns opaque, in the faint outer layer where the decoder's
    colour is barely trained (read there, the demo's meshes came out nearly black). So each vertex
    gets a short ray from `span` outside it to 2·`span` inside, along its inward normal,
    composited with the renderer's own rule (volume_renderer.composite); the light left at its
    end takes the innermost sample's colour, as an opaque core would. That is the colour the
    renders show at that point."""
    from avatar_platform.models.eg3d.volume_renderer import composite

    device = planes.device
    points = torch.tensor(np.asarray(vertices), dtype=torch.float32, device=device)
    inward = -torch.nn.functional.normalize(
        torch.tensor(np.asarray(normals), dtype=torch.float32, device=device), dim=-1
    )
    depths = torch.linspace(-span, 2 * span, SEEN_SAMPLES, device=device)
    out = []
    for i in range(0, len(points), chunk):
        p, d = points[i : i + chunk], inward[i : i + chunk]
        samples = p[:, None] + d[:, None] * depths[None, :, None]  # (M, S, 3)
        sigma, features = generator.field(planes, samples.reshape(1, -1, 3))
        shape = (1, len(p), SEEN_SAMPLES)
        colours = features[..., :3].reshape(*shape, 3)
        rgb, _, _, opacity = composite(
            colours, sigma.reshape(*shape, 1), depths.reshape(1, 1, -1, 1).expand(*shape, 1)
        )
        out.append((rgb[0] + (1 - opacity[0]) * colours[0, :, -1]).clamp(0, 1))
    return torch.cat(out).cpu().numpy()


def mesh_for_seed(
    generator, seed: int, resolution: int, level: float | str | None, truncation_psi: float, **cleanup
):
    """mesh_for_ws of a seed; `cleanup`: keep, smooth, faces."""
    ws = ws_for_seed(generator, seed, truncation_psi)
    return mesh_for_ws(generator, ws, resolution, level, **cleanup)


def write_gif(frames: list[np.ndarray], path: Path | io.BytesIO, fps: int = 12):
    """An endless GIF of `frames` into a file (returns its path) or a buffer."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
    )
    if isinstance(path, io.BytesIO):
        path.write(buffer.getvalue())
        return path
    Path(path).write_bytes(buffer.getvalue())
    return Path(path)


def write_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path)
    return Path(path)
