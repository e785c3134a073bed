"""Pictures of a mesh, so that a person can judge it without a 3D viewer: the mesh ray-cast at the
platform's cameras (docs/camera_conventions.md), vertex colours lit from the camera's upper left
on a white background. Used by `sample --mesh` (mesh-*.png) and the fidelity benchmark."""

from __future__ import annotations

import numpy as np
import trimesh

from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles, camera_rays

PREVIEW_YAWS = (0.0, 45.0, 90.0, 180.0, -90.0)


def render_mesh(
    mesh: trimesh.Trimesh,
    yaw: float,
    pitch: float = 0.0,
    resolution: int = 256,
    camera: CameraConfig | None = None,
) -> np.ndarray:
    """(R, R, 3) uint8: the mesh seen from (yaw, pitch) degrees; white where no face is hit."""
    image = np.ones((resolution * resolution, 3), np.float32)
    if len(mesh.faces) == 0:
        return (image.reshape(resolution, resolution, 3) * 255).astype(np.uint8)
    cam = camera_from_angles(yaw, pitch, camera or CameraConfig())
    origins, dirs, _ = camera_rays(cam, resolution)
    _, rays, faces = mesh.ray.intersects_location(origins, dirs, multiple_hits=False)
    if len(rays):
        normals = mesh.face_normals[faces]
        # light what faces the camera, whichever way a face is wound
        normals = np.where((np.sum(normals * dirs[rays], axis=1) > 0)[:, None], -normals, normals)
        light = cam[:12].reshape(3, 4)[:, :3] @ np.array([-0.5, -0.7, -0.6])
        light /= np.linalg.norm(light)
        shade = 0.35 + 0.65 * np.clip(normals @ light, 0.0, 1.0)
        colour = _face_colours(mesh)[faces]
        image[rays] = np.clip(colour * shade[:, None], 0.0, 1.0)
    return (image.reshape(resolution, resolution, 3) * 255 + 0.5).astype(np.uint8)


def _face_colours(mesh: trimesh.Trimesh) -> np.ndarray:
    """(F, 3) float colours: the mean of each face's vertex colours, or a light grey."""
    if getattr(mesh.visual, "kind", None) != "vertex":
        return np.full((len(mesh.faces), 3), 0.8, np.float32)
    rgb = np.asarray(mesh.visual.vertex_colors, np.float32)[:, :3] / 255.0
    return rgb[mesh.faces].mean(axis=1)


def mesh_preview(mesh: trimesh.Trimesh, yaws=PREVIEW_YAWS, resolution: int = 256) -> np.ndarray:
    """(R, len(yaws)·R, 3) uint8: the mesh from each yaw, side by side."""
    return np.concatenate([render_mesh(mesh, yaw, resolution=resolution) for yaw in yaws], axis=1)
