"""Volume rendering and marching cubes against analytic answers (a sphere)."""

from __future__ import annotations

import numpy as np
import torch

from avatar_platform.models.eg3d.volume_renderer import camera_rays, render_rays
from avatar_platform.models.mesh import extract_mesh
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.poses.camera import camera_rays as numpy_camera_rays

RADIUS = 0.3


def _sphere_field(points: torch.Tensor):
    """Dense inside a sphere of RADIUS at the origin, empty outside; colour = 0.5."""
    inside = points.norm(dim=-1, keepdim=True) < RADIUS
    sigma = torch.where(
        inside,
        torch.full_like(inside, 1e4, dtype=points.dtype),
        torch.full_like(inside, -1e4, dtype=points.dtype),
    )
    return sigma, torch.full((*points.shape[:-1], 3), 0.5)


def test_torch_rays_match_the_dataset_camera_convention():
    camera = camera_from_angles(40.0, -12.0, CameraConfig())
    origins, dirs = camera_rays(torch.tensor(camera)[None].double(), 8)
    np_origins, np_dirs, _ = numpy_camera_rays(camera, 8)
    np.testing.assert_allclose(origins[0].numpy(), np_origins, atol=1e-5)
    np.testing.assert_allclose(dirs[0].numpy(), np_dirs, atol=1e-5)


def test_rendering_a_sphere_gives_its_depth_and_opacity():
    camera = torch.tensor(camera_from_angles(25.0, 10.0, CameraConfig()))[None]
    origins, dirs = camera_rays(camera, 16)
    _, depth, opacity = render_rays(
        _sphere_field, origins, dirs, depth_samples=64, importance_samples=64, ray_start=2.25, ray_end=3.3
    )
    # analytic first hit of each ray on the sphere
    o, d = origins[0].double(), dirs[0].double()
    b = (o * d).sum(-1)
    disc = b**2 - (o.square().sum(-1) - RADIUS**2)
    hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    assert hit.sum() > 20 and (~hit).sum() > 20
    np.testing.assert_allclose(opacity[0, hit, 0].numpy(), 1.0, atol=1e-3)
    np.testing.assert_allclose(opacity[0, ~hit, 0].numpy(), 0.0, atol=1e-3)
    # ray depth is along the (unit) ray; the sample spacing bounds the error
    deep = hit & (disc > 0.01)
    np.testing.assert_allclose(depth[0, deep, 0].numpy(), t[deep].numpy(), atol=0.02)


def test_marching_cubes_on_a_sphere_density_gives_its_radius():
    def density(points):  # raw density crossing the iso-level 10 at RADIUS
        return 10.0 + 100.0 * (RADIUS - points.norm(dim=-1))

    mesh = extract_mesh(
        density, resolution=64, box_size=1.0, level=10.0, color=lambda p: torch.full((len(p), 3), 0.25)
    )
    radii = np.linalg.norm(mesh.vertices, axis=1)
    np.testing.assert_allclose(radii, RADIUS, atol=1.0 / 64)
    assert mesh.is_watertight
    assert mesh.volume > 0  # faces point outwards
    np.testing.assert_allclose(mesh.volume, 4 / 3 * np.pi * RADIUS**3, rtol=0.05)
    assert (mesh.visual.vertex_colors[:, :3] == 64).all()


def test_no_surface_gives_an_empty_mesh():
    mesh = extract_mesh(lambda p: torch.zeros(len(p)), resolution=16, level=10.0)
    assert len(mesh.vertices) == 0


def test_perturbed_samples_follow_the_callers_generator():
    from avatar_platform.models.eg3d.volume_renderer import stratified_depths

    def depths(seed: int):
        # training keeps one CPU generator per worker, whatever device the model is on (the
        # CUDA path is exercised by bench/gpu.py where a GPU is lent)
        generator = torch.Generator().manual_seed(seed)
        return stratified_depths(2, 5, 4, 1.0, 2.0, "cpu", True, generator)

    torch.testing.assert_close(depths(3), depths(3))
    assert not torch.equal(depths(3), depths(4))
    bins = depths(3).squeeze(-1)
    lower = torch.linspace(1.0, 2.0, 5)[:-1]
    assert ((bins >= lower) & (bins < lower + 0.25)).all()  # one point inside each bin
