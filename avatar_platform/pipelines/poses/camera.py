"""Cameras in the EG3D convention: 25 numbers = cam2world (4×4, OpenCV axes) ‖ normalised intrinsics (3×3).

World: head centre at the origin, +y up, the face looks along +z, the avatar's left ear is at +x.
Camera: OpenCV axes (x right, y down, z forward). Yaw 0 is the frontal view, positive yaw moves the
camera towards +x (it sees the avatar's left side), yaw ±180° sees the back of the head; positive
pitch lifts the camera above the head, looking down. See docs/camera_conventions.md.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from avatar_platform.core.config import StrictConfig

EG3D_FOCAL = 4.2647


class CameraConfig(StrictConfig):
    """Where the cameras sit and which angles they cover (docs/method.md §1–2)."""

    radius: float = Field(2.7, gt=0, description="distance of the camera from the look-at point")
    focal: float = Field(EG3D_FOCAL, gt=0, description="normalised focal length (EG3D: 4.2647)")
    look_at: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.0), description="the point every camera looks at (the head centre)"
    )
    yaw_range: tuple[float, float] = Field(
        (-180.0, 180.0), description="yaw range in degrees; 0 = front, ±180 = back"
    )
    pitch_range: tuple[float, float] = Field(
        (-30.0, 30.0), description="pitch range in degrees; positive = camera above the head"
    )

    @model_validator(mode="after")
    def _ordered(self) -> CameraConfig:
        for name in ("yaw_range", "pitch_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        if not (self.yaw_range[0] >= -180 and self.yaw_range[1] <= 180):
            raise ValueError("yaw_range must lie within [-180, 180]")
        if not (self.pitch_range[0] >= -89 and self.pitch_range[1] <= 89):
            raise ValueError("pitch_range must lie within [-89, 89]")
        return self


def camera_position(yaw_deg: float, pitch_deg: float, radius: float, look_at) -> np.ndarray:
    """(3,) world position of a camera at (yaw, pitch) on the sphere around `look_at`."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    offset = radius * np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
    return np.asarray(look_at, dtype=np.float64) + offset


def look_at_cam2world(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) cam2world with OpenCV axes: z towards `target`, y down, x right (world up is +y)."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    world_up = np.array([0.0, 1.0, 0.0])
    right = np.cross(forward, world_up)
    if np.linalg.norm(right) < 1e-8:  # looking straight up or down: any right vector will do
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cam2world = np.eye(4)
    cam2world[:3, 0], cam2world[:3, 1], cam2world[:3, 2] = right, down, forward
    cam2world[:3, 3] = position
    return cam2world


def intrinsics(focal: float = EG3D_FOCAL) -> np.ndarray:
    """(3, 3) normalised intrinsics: principal point at 0.5, image coordinates in [0, 1]."""
    return np.array([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]])


def camera_from_angles(yaw_deg: float, pitch_deg: float, config: CameraConfig) -> np.ndarray:
    """(25,) float32 EG3D camera for (yaw, pitch)."""
    position = camera_position(yaw_deg, pitch_deg, config.radius, config.look_at)
    cam2world = look_at_cam2world(position, np.asarray(config.look_at, dtype=np.float64))
    return np.concatenate([cam2world.reshape(-1), intrinsics(config.focal).reshape(-1)]).astype(np.float32)


def split_camera(camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(25,) → cam2world (4, 4), intrinsics (3, 3), as float64."""
    camera = np.asarray(camera, dtype=np.float64)
    if camera.shape != (25,):
        raise ValueError(f"camera must have shape (25,), got {camera.shape}")
    return camera[:16].reshape(4, 4), camera[16:].reshape(3, 3)


def project_points(points: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) → normalised image coordinates (N, 2) in [0, 1] and camera depth (N,)."""
    cam2world, k = split_camera(camera)
    world2cam = np.linalg.inv(cam2world)
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    in_camera = (world2cam @ homogeneous.T).T[:, :3]
    depth = in_camera[:, 2]
    uv = (k @ (in_camera / depth[:, None]).T).T[:, :2]
    return uv, depth


def camera_rays(camera: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays through pixel centres, row-major: origins (R², 3), unit directions (R², 3), and
    cos_forward (R²,) — the cosine between each ray and the optical axis (hit distance × it =
    z-depth)."""
    cam2world, k = split_camera(camera)
    centres = (np.arange(resolution) + 0.5) / resolution
    v, u = np.meshgrid(centres, centres, indexing="ij")
    x = (u - k[0, 2]) / k[0, 0]
    y = (v - k[1, 2]) / k[1, 1]
    dirs_cam = np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3)
    dirs_cam /= np.linalg.norm(dirs_cam, axis=1, keepdims=True)
    dirs = dirs_cam @ cam2world[:3, :3].T
    origins = np.broadcast_to(cam2world[:3, 3], dirs.shape).copy()
    return origins, dirs, dirs_cam[:, 2]


def mirror_camera(camera: np.ndarray) -> np.ndarray:
    """The camera of the horizontally mirrored image: world x → −x (yaw → −yaw), image x → −x."""
    cam2world, k = split_camera(camera)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    mirrored = flip @ cam2world @ flip
    return np.concatenate([mirrored.reshape(-1), k.reshape(-1)]).astype(np.float32)


def sample_view_angles(
    rng: np.random.Generator, views: int, config: CameraConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch (degrees) for `views` images of one avatar.

    Yaw is stratified: one random offset, then evenly spaced, so each avatar covers the circle
    while every image's yaw is still uniform over the range. Pitch is uniform.
    """
    low, high = config.yaw_range
    span = high - low
    offset = rng.uniform(0.0, span / views)
    yaw = low + offset + np.arange(views) * (span / views)
    yaw = np.where(yaw > 180.0, yaw - 360.0, yaw)
    pitch = rng.uniform(config.pitch_range[0], config.pitch_range[1], size=views)
    return yaw, pitch
