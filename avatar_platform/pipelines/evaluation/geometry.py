"""Geometry error against the `procedural` ground truth: Chamfer distance between a generated
avatar's mesh and the nearest template bust of the dataset (docs/method.md §3's misalignment test)."""

from __future__ import annotations

import numpy as np
import trimesh


def chamfer_distance(a: trimesh.Trimesh, b: trimesh.Trimesh, points: int = 4096, seed: int = 0) -> float:
    """Symmetric mean nearest-neighbour distance between surface samples of two meshes."""
    from scipy.spatial import cKDTree

    if len(a.faces) == 0 or len(b.faces) == 0:
        return float("inf")
    pa = trimesh.sample.sample_surface(a, points, seed=seed)[0]
    pb = trimesh.sample.sample_surface(b, points, seed=seed + 1)[0]
    da, _ = cKDTree(pb).query(pa)
    db, _ = cKDTree(pa).query(pb)
    return float((da.mean() + db.mean()) / 2)


def clip_to_box(mesh: trimesh.Trimesh, half: float) -> trimesh.Trimesh:
    """The part of a template inside the tri-plane box (what a generator can represent)."""
    keep = np.all(np.abs(mesh.triangles_center) <= half, axis=1)
    out = mesh.copy()
    out.update_faces(keep)
    out.remove_unreferenced_vertices()
    return out


def nearest_template_error(
    mesh: trimesh.Trimesh, templates: list[trimesh.Trimesh], box: float = 1.0
) -> float:
    """Chamfer distance to the closest of `templates` (clipped to the box)."""
    return nearest_template(mesh, templates, box)[1]


def largest_component_share(mesh: trimesh.Trimesh) -> float:
    """Share of the faces in the largest connected component (1.0 = one piece; 0 for no faces)."""
    if len(mesh.faces) == 0:
        return 0.0
    from avatar_platform.models.mesh import keep_largest

    return len(keep_largest(mesh).faces) / len(mesh.faces)


def border_faces(mesh: trimesh.Trimesh, box: float, resolution: int, voxels: int = 2) -> int:
    """Faces with a vertex within `voxels` grid cells of the tri-plane box's border: density
    that reaches the box (walls, backdrop painted in 3D)."""
    if len(mesh.faces) == 0:
        return 0
    limit = box / 2 - voxels * box / (resolution - 1)
    near = np.abs(mesh.vertices).max(axis=1) > limit
    return int(near[mesh.faces].any(axis=1).sum())


def volume_outside(occupied: np.ndarray, box: float, low: np.ndarray, high: np.ndarray) -> float:
    """Occupied volume (box units³) outside the bounding box [low, high] of the true shape;
    `occupied` (R, R, R) bool on the cell centres of the cube [-box/2, box/2]³, indexed [x, y, z]."""
    resolution = occupied.shape[0]
    axis = np.linspace(-box / 2, box / 2, resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    points = np.stack([x, y, z], axis=-1)
    inside = np.all((points >= low) & (points <= high), axis=-1)
    cell = (box / (resolution - 1)) ** 3
    return float((occupied & ~inside).sum() * cell)


def silhouette_iou(opacity: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> float:
    """IoU between a render's opacity (R, R) thresholded at `threshold` and a true mask (R, R)."""
    ours = np.asarray(opacity) >= threshold
    truth = np.asarray(mask).astype(bool)
    union = (ours | truth).sum()
    return float((ours & truth).sum() / union) if union else 1.0


def nearest_template(
    mesh: trimesh.Trimesh, templates: list[trimesh.Trimesh], box: float = 1.0
) -> tuple[int, float]:
    """(index, Chamfer distance) of the template closest to `mesh` (clipped to the box)."""
    errors = [chamfer_distance(mesh, clip_to_box(t, box / 2)) for t in templates]
    best = int(np.argmin(errors))
    return best, float(errors[best])
