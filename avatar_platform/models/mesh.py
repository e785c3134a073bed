"""Meshes from a density field that a person can use: sample a grid in the tri-plane box, zero a
border band, marching cubes at an opacity level, keep the largest component, optional Taubin
smoothing and decimation to a face budget, vertex colours at the final vertices.

EG3D extracts at 512³ with a zeroed border (30/256 of the grid on five sides, 38/256 on top) and
iso-level 10 on the raw density; here resolution, level, band and clean-up are arguments:

- border band: `BORDER_FRACTION` of the grid side on every side (⌈f·(R−1)⌉ voxels, at least one)
  is set below the level, so no surface touches the box and the box's walls vanish, at any
  resolution. 1/16 (8 voxels at 128³) keeps the procedural busts (within ±0.374 of a unit box)
  whole; EG3D's 30/256 band would cut into them;
- level `"auto"` (or None): the density at which a layer one renderer ray step thick reaches
  opacity `AUTO_OPACITY` (0.5) under the renderer's σ → α rule
  (volume_renderer.composite: α = 1 − exp(−softplus(σ − 1)·δ)), i.e.
  σ = 1 + softplus⁻¹(−ln(1 − α)/δ) — see `opacity_level`. The mesh then lies where a rendered ray
  turns opaque, whatever the preset's sampling; EG3D's step (1.05/48) gives 32.7, the demo preset
  (1.05/16) 11.6, tiny (1.05/12) 8.9. A model early in training (or random weights) may have no
  density that high: then "auto" falls back to the level that puts AUTO_OCCUPANCY (8%) of the
  box inside, and says so in mesh.metadata["level_rule"] ("occupancy fallback"). A number is
  used as it is (EG3D: 10);
- `keep="largest"` keeps the connected component with the most faces (floaters and inner shells
  go), `keep="all"` keeps every component;
- `smooth=N`: N Taubin iterations, each a λ = 0.5 step and a μ = −0.52 step (trimesh's
  filter_taubin, 2N passes): smooths the marching-cubes steps without shrinking the volume;
- `faces=N`: quadric decimation (fast-simplification, as trimesh's simplify_quadric_decimation)
  to at most N faces.

Colours come from the colour function at the final vertices (after smoothing and decimation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import trimesh

DensityFn = Callable[[torch.Tensor], torch.Tensor]  # points (M, 3) → raw density (M,)
ColorFn = Callable[[torch.Tensor], torch.Tensor]  # points (M, 3) → RGB in [0, 1] (M, 3)

BORDER_FRACTION = 1 / 16  # share of the grid side zeroed on each side of the box
AUTO_OPACITY = 0.5  # opacity of one renderer ray step at the surface (level "auto")
AUTO_OCCUPANCY = 0.08  # level "occupancy": share of the box inside the surface
KEEP = ("largest", "all")
TAUBIN_LAMBDA, TAUBIN_MU = 0.5, -0.52  # passband 1/λ + 1/μ = 0.077 (Taubin: < 0.1)


@torch.no_grad()
def density_grid(
    density: DensityFn, resolution: int, box_size: float, chunk: int = 262_144, device="cpu"
) -> np.ndarray:
    """(R, R, R) float32 densities on the cell centres of the cube [-box/2, box/2]³, indexed
    [x, y, z]."""
    half = box_size / 2
    axis = torch.linspace(-half, half, resolution, device=device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    values = torch.cat([density(grid[i : i + chunk]).reshape(-1) for i in range(0, len(grid), chunk)])
    return values.reshape(resolution, resolution, resolution).float().cpu().numpy()


def opacity_level(ray_step: float, opacity: float = AUTO_OPACITY) -> float:
    """The raw density σ at which a layer `ray_step` thick is `opacity` opaque under the
    renderer's α = 1 − exp(−softplus(σ − 1)·δ): σ = 1 + softplus⁻¹(−ln(1 − α)/δ)."""
    if not 0 < opacity < 1 or ray_step <= 0:
        raise ValueError(f"opacity {opacity} must be in (0, 1) and ray_step {ray_step} > 0")
    y = -math.log1p(-opacity) / ray_step  # softplus(σ − 1)
    return 1.0 + y + math.log(-math.expm1(-y))  # softplus⁻¹(y) = y + ln(1 − e^−y)


def border_voxels(resolution: int, fraction: float = BORDER_FRACTION) -> int:
    """Voxels zeroed on each side of an R³ grid: ⌈fraction·(R − 1)⌉, at least 1."""
    return max(1, math.ceil(fraction * (resolution - 1) - 1e-9))


def resolve_level(grid: np.ndarray, level: float | str | None, ray_step: float | None) -> tuple[float, str]:
    """(level, rule): a number as it is ("number"); "auto"/None: `opacity_level(ray_step)`
    ("opacity"), or, where no density of the grid reaches it, the occupancy level
    ("occupancy fallback"); "occupancy": the level that puts AUTO_OCCUPANCY of the box inside (a
    quantile of the grid)."""
    if level is None or level == "auto":
        if ray_step is None:
            raise ValueError("level 'auto' needs the renderer's ray_step")
        value = opacity_level(ray_step)
        if grid.max() > value:
            return value, "opacity"
        return occupancy_level(grid), "occupancy fallback"
    if level == "occupancy":
        return occupancy_level(grid), "occupancy"
    if isinstance(level, str):
        raise ValueError(f"level {level!r}: a number, 'auto' or 'occupancy'")
    return float(level), "number"


def occupancy_level(grid: np.ndarray) -> float:
    return float(np.quantile(grid, 1.0 - AUTO_OCCUPANCY))


def keep_largest(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The connected component (faces sharing vertices) with the most faces."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(mesh.faces) == 0:
        return mesh
    edges = mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = len(mesh.vertices)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    if count == 1:
        return mesh
    face_labels = labels[mesh.faces[:, 0]]
    largest = np.bincount(face_labels).argmax()
    out = mesh.copy()
    out.update_faces(face_labels == largest)
    out.remove_unreferenced_vertices()
    return out


def decimate(mesh: trimesh.Trimesh, faces: int) -> trimesh.Trimesh:
    """Quadric decimation (fast-simplification) to at most `faces` faces."""
    import fast_simplification

    if len(mesh.faces) <= faces:
        return mesh
    target = faces
    for _ in range(4):  # the simplifier may stop a little above its target: aim lower
        points, triangles = fast_simplification.simplify(
            np.ascontiguousarray(mesh.vertices, dtype=np.float64),
            np.ascontiguousarray(mesh.faces, dtype=np.int64),
            target_count=target,
        )
        if len(triangles) <= faces:
            break
        target = max(1, int(target * faces / len(triangles)) - 1)
    out = trimesh.Trimesh(vertices=points, faces=triangles, process=False)
    out.update_faces(out.nondegenerate_faces())
    out.remove_unreferenced_vertices()
    return out


def extract_mesh(
    density: DensityFn,
    resolution: int = 128,
    box_size: float = 1.0,
    level: float | str | None = 10.0,
    border: float = BORDER_FRACTION,
    color: ColorFn | None = None,
    device="cpu",
    *,
    ray_step: float | None = None,
    keep: str = "largest",
    smooth: int = 0,
    faces: int | None = None,
) -> trimesh.Trimesh:
    """Marching cubes on the density grid; world-space vertices, outward faces, optional vertex
    colours (see the module docstring for each step).

    level: a raw density, "auto"/None (the opacity rule: needs `ray_step`, the renderer's depth
    sample spacing) or "occupancy". border: the band as a fraction of the grid side (0: none).
    keep: "largest" | "all". smooth: Taubin iterations. faces: a face budget (None: no limit).
    A grid without a surface at the level gives an empty mesh, not an error.
    """
    from skimage.measure import marching_cubes

    if keep not in KEEP:
        raise ValueError(f"keep {keep!r}: one of {', '.join(KEEP)}")
    if faces is not None and faces <= 0:
        raise ValueError(f"faces {faces}: a positive face budget")
    if smooth < 0:
        raise ValueError(f"smooth {smooth}: iterations >= 0")
    grid = density_grid(density, resolution, box_size, device=device)
    level, rule = resolve_level(grid, level, ray_step)
    if border:
        band = border_voxels(resolution, border)
        fill = min(float(grid.min()), level - 1.0)  # the band is outside the surface
        grid[:band], grid[-band:] = fill, fill
        grid[:, :band], grid[:, -band:] = fill, fill
        grid[:, :, :band], grid[:, :, -band:] = fill, fill
    if not grid.min() < level < grid.max():
        return _with_level(trimesh.Trimesh(), level, rule)
    verts, tris, _, _ = marching_cubes(grid, level=level)
    spacing = box_size / (resolution - 1)
    verts = verts * spacing - box_size / 2
    # marching cubes orients faces towards increasing values (inwards here): flip them
    mesh = trimesh.Trimesh(vertices=verts, faces=tris[:, ::-1], process=False)
    if keep == "largest":
        mesh = keep_largest(mesh)
    if smooth:
        trimesh.smoothing.filter_taubin(mesh, lamb=TAUBIN_LAMBDA, nu=-TAUBIN_MU, iterations=2 * smooth)
    if faces is not None:
        mesh = decimate(mesh, faces)
    if color is not None and len(mesh.vertices):
        mesh.visual.vertex_colors = vertex_colors(color, mesh.vertices, device)
    return _with_level(mesh, level, rule)


def _with_level(mesh: trimesh.Trimesh, level: float, rule: str) -> trimesh.Trimesh:
    """Record the iso-level and its rule in mesh.metadata (`level`, `level_rule`)."""
    mesh.metadata.update(level=level, level_rule=rule)
    return mesh


@torch.no_grad()
def vertex_colors(color: ColorFn, vertices: np.ndarray, device="cpu") -> np.ndarray:
    """(V, 4) uint8 RGBA of the colour function at `vertices`."""
    rgb = color(torch.as_tensor(np.asarray(vertices), dtype=torch.float32, device=device))
    rgba = np.concatenate([np.clip(rgb.cpu().numpy(), 0, 1), np.ones((len(vertices), 1))], 1)
    return (rgba * 255 + 0.5).astype(np.uint8)
