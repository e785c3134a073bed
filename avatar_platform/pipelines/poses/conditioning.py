"""The images that guide ControlNet, rendered from a template and a camera by ray casting.

Depth follows the MiDaS convention (near = bright, normalised over the foreground); the OpenPose
image is drawn with controlnet-aux's COCO-18 body drawing (its limb colours, black background) from
the projected landmarks that the camera sees. Ray casting runs through Embree (embreex) via trimesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_platform.pipelines.poses.camera import camera_rays, project_points, split_camera
from avatar_platform.pipelines.poses.template import (
    ACCESSORY,
    COCO18_NAMES,
    SURFACE_LANDMARKS,
    AvatarTemplate,
)

VISIBILITY_TOLERANCE = 0.02  # world units between a landmark and the first surface hit


@dataclass
class GBuffer:
    """Per-pixel ray-cast results at one camera; all (R, R[, 3]) row-major, R = resolution."""

    mask: np.ndarray  # bool, foreground
    depth: np.ndarray  # float32 camera z-depth, +inf on the background
    normal: np.ndarray  # float32 world-space unit normals, 0 on the background
    part: np.ndarray  # uint8 part id (template.PART_NAMES), 255 on the background
    position: np.ndarray  # float32 world-space hit points


@dataclass
class ConditionImages:
    """What ControlNet sees: (R, R, 3) uint8 images and the foreground mask."""

    openpose: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    visible_landmarks: tuple[str, ...]


def raycast(template: AvatarTemplate, camera: np.ndarray, resolution: int) -> GBuffer:
    """Cast one ray per pixel centre and keep the first hit."""
    origins, dirs, cos_forward = camera_rays(camera, resolution)
    locations, ray_idx, tri_idx = template.intersector.intersects_location(origins, dirs, multiple_hits=False)
    n = resolution * resolution
    mask = np.zeros(n, bool)
    depth = np.full(n, np.inf, np.float32)
    normal = np.zeros((n, 3), np.float32)
    part = np.full(n, 255, np.uint8)
    position = np.zeros((n, 3), np.float32)
    if len(ray_idx):
        distance = np.linalg.norm(locations - origins[ray_idx], axis=1)
        mask[ray_idx] = True
        depth[ray_idx] = distance * cos_forward[ray_idx]
        face_normals = template.mesh.face_normals[tri_idx]
        # the renderer lights what faces the camera, whichever way a face was wound
        flip = np.sum(face_normals * dirs[ray_idx], axis=1) > 0
        face_normals[flip] *= -1
        normal[ray_idx] = face_normals
        part[ray_idx] = template.face_parts[tri_idx]
        position[ray_idx] = locations
    shape = (resolution, resolution)
    return GBuffer(
        mask.reshape(shape),
        depth.reshape(shape),
        normal.reshape(*shape, 3),
        part.reshape(shape),
        position.reshape(*shape, 3),
    )


def depth_image(gbuffer: GBuffer) -> np.ndarray:
    """(R, R, 3) uint8 MiDaS-style depth: inverse depth normalised over the foreground, near = 255,
    background 0."""
    out = np.zeros(gbuffer.depth.shape, np.float32)
    if gbuffer.mask.any():
        inverse = 1.0 / gbuffer.depth[gbuffer.mask]
        low, high = inverse.min(), inverse.max()
        # the farthest foreground point stays a little above the background
        out[gbuffer.mask] = 0.1 + 0.9 * (inverse - low) / max(high - low, 1e-9)
    return np.repeat((out * 255.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)


def visible_landmarks(template: AvatarTemplate, camera: np.ndarray) -> dict[str, np.ndarray]:
    """Landmarks the camera sees, as normalised image points (2,).

    A surface landmark (nose, eyes, ears) is visible when the first body hit on the ray towards
    it lies within VISIBILITY_TOLERANCE of it (a depth test; accessories do not occlude);
    skeletal joints are always kept.
    """
    names = [name for name in COCO18_NAMES if name in template.landmarks]
    points = np.stack([template.landmarks[name] for name in names])
    uv, depth = project_points(points, camera)
    cam2world, _ = split_camera(camera)
    origin = cam2world[:3, 3]
    to_points = points - origin
    distance = np.linalg.norm(to_points, axis=1)
    dirs = to_points / distance[:, None]
    hits, ray_idx, tri_idx = template.intersector.intersects_location(
        np.repeat(origin[None], len(points), axis=0), dirs, multiple_hits=True
    )
    first_hit = np.full(len(points), np.inf)
    # glasses and hats do not hide a keypoint from OpenPose: only the body occludes
    body = template.face_parts[tri_idx] != ACCESSORY
    np.minimum.at(first_hit, ray_idx[body], np.linalg.norm(hits[body] - origin, axis=1))
    out = {}
    for i, name in enumerate(names):
        in_view = depth[i] > 0 and np.all((uv[i] >= 0.0) & (uv[i] <= 1.0))
        unoccluded = first_hit[i] >= distance[i] - VISIBILITY_TOLERANCE
        if in_view and (name not in SURFACE_LANDMARKS or unoccluded):
            out[name] = uv[i]
    return out


# The OpenPose COCO-18 body drawing that ControlNet's OpenPose model was trained on: limbs as
# (start, end) keypoint indices with one colour each, keypoints in the same colour order.
# tests/pipelines/poses/test_openpose_drawing.py checks it pixel for pixel against controlnet-aux's
# `draw_bodypose`; drawing here avoids importing controlnet-aux (≈ 7 s, every detector at once)
# in every Ray worker.
OPENPOSE_LIMBS = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)
OPENPOSE_COLORS = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
OPENPOSE_STICK_WIDTH = 4
OPENPOSE_LIMB_SHADE = 0.6  # limbs are drawn darker than their keypoints


def openpose_image(points: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    """(R, R, 3) uint8 COCO-18 OpenPose drawing of `points` (normalised image coordinates)."""
    import cv2

    canvas = np.zeros((resolution, resolution, 3), np.uint8)
    pixels = {
        COCO18_NAMES.index(name): np.asarray(uv, np.float64) * resolution for name, uv in points.items()
    }
    for (start, end), color in zip(OPENPOSE_LIMBS, OPENPOSE_COLORS, strict=False):
        if start not in pixels or end not in pixels:
            continue
        (x0, y0), (x1, y1) = pixels[start], pixels[end]
        length = float(np.hypot(x0 - x1, y0 - y1))
        angle = int(np.degrees(np.arctan2(y0 - y1, x0 - x1)))
        centre = (int((x0 + x1) / 2), int((y0 + y1) / 2))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), OPENPOSE_STICK_WIDTH), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(c * OPENPOSE_LIMB_SHADE) for c in color])
    for index, color in enumerate(OPENPOSE_COLORS):
        if index in pixels:
            x, y = pixels[index]
            cv2.circle(canvas, (int(x), int(y)), OPENPOSE_STICK_WIDTH, color, thickness=-1)
    return canvas


def render_conditions(template: AvatarTemplate, camera: np.ndarray, resolution: int) -> ConditionImages:
    """Depth, OpenPose and mask of `template` seen from `camera`."""
    gbuffer = raycast(template, camera, resolution)
    points = visible_landmarks(template, camera)
    return ConditionImages(
        openpose=openpose_image(points, resolution),
        depth=depth_image(gbuffer),
        mask=gbuffer.mask,
        visible_landmarks=tuple(points),
    )
