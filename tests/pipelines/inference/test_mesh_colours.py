"""A mesh's vertex colours are the colours its renders show, not the colour of the faint outer
layer where the iso-surface lies (that layer's colour is barely trained: read there, the demo's
meshes came out nearly black)."""

import numpy as np
import torch

from avatar_platform.models.eg3d.generator import GeneratorConfig
from avatar_platform.pipelines.inference.sampling import mesh_for_ws

EDGE = 0.33  # the density falls linearly to 0 at this radius
SLOPE = 400.0  # raw density per unit of depth
BLACK_BELOW = 20.0  # the field is black where its density is below this, red deeper in


def density_at(r):
    return np.clip(SLOPE * (EDGE - r), 0.0, 200.0)


class FoggySphere:
    """A sphere whose density ramps up inwards, black in its faint outer layer and red in its
    core, as a generator's field: planes(ws) → anything, field(planes, points) → (raw density,
    features)."""

    config = GeneratorConfig(depth_samples=16)

    def planes(self, ws):
        return torch.zeros(1)

    def field(self, planes, points):
        r = points.norm(dim=-1, keepdim=True)
        sigma = (SLOPE * (EDGE - r)).clamp(0.0, 200.0)
        red = (sigma >= BLACK_BELOW).float()
        return sigma, torch.cat([red, torch.zeros_like(red), torch.zeros_like(red)], dim=-1)


def radial_render_red() -> float:
    """The red a camera sees looking straight at the sphere: the renderer's rule, α = 1 −
    exp(−softplus(σ − 1)·δ), integrated finely along a radius, in numpy."""
    r = np.linspace(0.5, 0.0, 20001)
    delta = r[0] - r[1]
    sigma = density_at(r)
    alpha = 1 - np.exp(-np.logaddexp(0.0, sigma - 1) * delta)
    weights = alpha * np.concatenate([[1.0], np.cumprod(1 - alpha)[:-1]])
    return float((weights * (sigma >= BLACK_BELOW)).sum() / weights.sum())


def test_vertex_colours_are_what_a_camera_sees():
    field = FoggySphere()
    mesh = mesh_for_ws(field, torch.zeros(1, 1, 1), resolution=48)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float)
    # the surface lies in the black outer layer: read there, every vertex would be black
    _, at_surface = field.field(None, torch.tensor(mesh.vertices, dtype=torch.float32))
    assert at_surface[:, 0].max() == 0.0
    expected = 255 * radial_render_red()
    assert 100 < expected < 250  # the render is mostly red, with some of the black fog
    assert abs(colours[:, 0].mean() - expected) < 15
    assert colours[:, 1:].max() == 0


def test_a_uniform_field_keeps_its_colour():
    class Grey(FoggySphere):
        def field(self, planes, points):
            sigma, _ = super().field(planes, points)
            return sigma, torch.full((*points.shape[:-1], 3), 0.25)

    mesh = mesh_for_ws(Grey(), torch.zeros(1, 1, 1), resolution=32)
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert np.abs(colours.astype(int) - 64).max() <= 1


def test_empty_field_gives_an_empty_mesh_without_colours():
    class Empty(FoggySphere):
        def field(self, planes, points):
            return torch.full((*points.shape[:-1], 1), -10.0), torch.zeros(*points.shape[:-1], 3)

    mesh = mesh_for_ws(Empty(), torch.zeros(1, 1, 1), resolution=16, level=5.0)
    assert len(mesh.vertices) == 0
