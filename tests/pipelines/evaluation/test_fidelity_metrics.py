"""The fidelity metrics against ground truth: mesh pieces, the box border, volume outside the true
shape, silhouette IoU, the nearest template; and the mesh preview pictures."""

from __future__ import annotations

import numpy as np
import trimesh

from avatar_platform.pipelines.evaluation.geometry import (
    border_faces,
    largest_component_share,
    nearest_template,
    silhouette_iou,
    volume_outside,
)
from avatar_platform.pipelines.inference.mesh_preview import mesh_preview, render_mesh
from avatar_platform.pipelines.poses.conditioning import raycast
from avatar_platform.pipelines.poses.template import bust_for_seed
from avatar_platform.pipelines.rendering import cameras


def test_largest_component_share_counts_faces_of_the_biggest_piece():
    big = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    small = trimesh.creation.icosphere(subdivisions=1, radius=0.05)
    small.apply_translation([0.4, 0, 0])
    both = trimesh.util.concatenate([big, small])
    assert largest_component_share(big) == 1.0
    expected = len(big.faces) / (len(big.faces) + len(small.faces))
    assert abs(largest_component_share(both) - expected) < 1e-9
    assert largest_component_share(trimesh.Trimesh()) == 0.0


def test_border_faces_are_those_that_reach_the_box():
    inside = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    wall = trimesh.creation.box(extents=(1.0, 1.0, 1.0))  # the box's own faces
    assert border_faces(inside, box=1.0, resolution=64) == 0
    assert border_faces(wall, box=1.0, resolution=64) == len(wall.faces)


def test_volume_outside_the_true_bounds():
    axis = np.linspace(-0.5, 0.5, 33)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    cube = (np.abs(x) <= 0.25) & (np.abs(y) <= 0.25) & (np.abs(z) <= 0.25)
    low, high = np.full(3, -0.25), np.full(3, 0.25)
    assert volume_outside(cube, 1.0, low, high) == 0.0
    everything = np.ones_like(cube)
    outside = volume_outside(everything, 1.0, low, high)
    cell = (1.0 / 32) ** 3
    assert abs(outside - (everything.sum() - cube.sum()) * cell) < 1e-12


def test_silhouette_iou_of_a_template_against_itself_and_its_shift():
    template = bust_for_seed(0)
    camera = cameras([0.0]).numpy()[0]
    mask = raycast(template, camera, 64).mask
    assert silhouette_iou(mask.astype(np.float32), mask) == 1.0
    shifted = np.roll(mask, 8, axis=1)
    assert 0.0 < silhouette_iou(shifted.astype(np.float32), mask) < 0.9
    assert silhouette_iou(np.zeros((4, 4)), np.zeros((4, 4), bool)) == 1.0


def test_the_nearest_template_is_the_same_bust():
    templates = [bust_for_seed(s).mesh for s in (3, 7, 11)]
    index, error = nearest_template(bust_for_seed(7).mesh, templates)
    assert index == 1 and error < 0.01  # the floor of 4096 surface samples a side: ~0.005
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    assert nearest_template(sphere, templates)[1] > 0.03


def test_mesh_preview_shows_the_mesh_lit_on_white():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    mesh.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(mesh.vertices), 1))
    image = render_mesh(mesh, 0.0, resolution=64)
    assert image.shape == (64, 64, 3)
    assert (image[0, 0] == 255).all()  # corner: background
    centre = image[32, 32].astype(int)
    assert centre[0] > centre[1] + 40  # the red of the vertex colours, lit
    strip = mesh_preview(mesh, yaws=(0.0, 90.0), resolution=32)
    assert strip.shape == (32, 64, 3)
    empty = render_mesh(trimesh.Trimesh(), 0.0, resolution=8)
    assert (empty == 255).all()
