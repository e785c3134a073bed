"""Geometry error against the `procedural` ground truth: Chamfer distance between a generated
avatar's mesh and the nearest template bust of the dataset (METHOD.md §3's misalignment test)."""

from __future__ import annotations

import numpy as np
import trimesh


def chamfer_distance(a: trimesh.Trimesh, b: trimesh.Trimesh, points: int = 4096,
                     seed: int = 0) -> float:  # fmt: skip
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


def nearest_template_error(mesh: trimesh.Trimesh, templates: list[trimesh.Trimesh],
                           box: float = 1.0) -> float:  # fmt: skip
    """Chamfer distance to the closest of `templates` (clipped to the box)."""
    return min(chamfer_distance(mesh, clip_to_box(t, box / 2)) for t in templates)
