"""Every network on the `tiny` preset: shapes, determinism, save/load, pickle, a training step."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.models.discriminator import DualDiscriminator, pose_label
from avatar_platform.models.eg3d.generator import TriPlaneGenerator
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")
YAWS = [0.0, 90.0, 180.0, -60.0]


def _cameras(yaws=YAWS, pitch=5.0) -> torch.Tensor:
    return torch.tensor(np.stack([camera_from_angles(y, pitch, CameraConfig()) for y in yaws]))


def _generator(triplane_depth: int = 1, seed: int = 0) -> TriPlaneGenerator:
    torch.manual_seed(seed)
    cfg = TINY.generator.model_copy(update={"triplane_depth": triplane_depth})
    return TriPlaneGenerator(cfg)


def _discriminator(mode: str = "coarse-to-fine") -> DualDiscriminator:
    torch.manual_seed(1)
    cond = TINY.discriminator.conditioning.model_copy(update={"mode": mode})
    return DualDiscriminator(TINY.discriminator.model_copy(update={"conditioning": cond}))


def _z(n: int = 4, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, TINY.generator.z_dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("depth", [1, 3])
def test_generator_output_shapes(depth):
    out = _generator(depth)(_z(), _cameras())
    g = TINY.generator
    assert out["image"].shape == (4, 3, g.img_resolution, g.img_resolution)
    r = g.neural_rendering_resolution
    assert out["image_raw"].shape == (4, 3, r, r)
    assert out["image_depth"].shape == (4, 1, r, r)
    assert torch.isfinite(out["image"]).all()
    depth_map = out["image_depth"]
    assert (depth_map >= g.ray_start).all() and (depth_map <= g.ray_end).all()


def test_neural_rendering_resolution_is_an_argument_not_state():
    generator = _generator()
    out = generator(_z(2), _cameras()[:2], neural_rendering_resolution=8)
    assert out["image_raw"].shape[-1] == 8
    assert out["image"].shape[-1] == TINY.generator.img_resolution
    assert generator(_z(2), _cameras()[:2])["image_raw"].shape[-1] == 16


def test_same_seed_same_output_and_forward_changes_no_state():
    generator = _generator()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    a = generator(_z(), _cameras())["image"]
    b = generator(_z(), _cameras())["image"]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, generator(_z(seed=4), _cameras())["image"])
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_truncation_pulls_towards_w_avg():
    generator = _generator()
    generator.mapping.update_w_avg(generator.map(_z(64, seed=9), _cameras([0.0] * 64)))
    c = _cameras()
    ws = generator.map(_z(), c)
    ws_half = generator.map(_z(), c, truncation_psi=0.5)
    w_avg = generator.mapping.w_avg
    torch.testing.assert_close(ws_half, w_avg + 0.5 * (ws - w_avg))


def test_bad_shapes_are_refused():
    generator = _generator()
    with pytest.raises(ValueError, match="camera must have shape"):
        generator(_z(), _cameras()[:, :16])
    with pytest.raises(ValueError, match="z must have shape"):
        generator(torch.randn(4, 7), _cameras())


@pytest.mark.parametrize("build", [_generator, _discriminator])
def test_save_load_round_trip(build, tmp_path):
    model = build()
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


@pytest.mark.parametrize("build", [_generator, _discriminator])
def test_pickle_round_trip(build):
    model = build()
    clone = pickle.loads(pickle.dumps(model))
    for key, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key]), key


def test_loading_another_architecture_or_a_damaged_file_is_one_clear_error(tmp_path):
    _discriminator().save_pretrained(tmp_path, name="generator")
    with pytest.raises(AvatarPlatformError, match="DualDiscriminator checkpoint"):
        TriPlaneGenerator.from_pretrained(tmp_path)
    _generator().save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "generator.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(AvatarPlatformError, match="cannot read the weights"):
        TriPlaneGenerator.from_pretrained(tmp_path / "g")
    with pytest.raises(AvatarPlatformError, match="holds no 'generator' checkpoint"):
        TriPlaneGenerator.from_pretrained(tmp_path / "nothing")


@pytest.mark.parametrize("mode", ["coarse-to-fine", "fine", "coarse", "camera", "none"])
def test_discriminator_modes_output_one_logit(mode):
    disc = _discriminator(mode)
    out = _generator()(_z(), _cameras())
    yaw, pitch = torch.tensor(YAWS), torch.full((4,), 5.0)
    label = pose_label(yaw, pitch, _cameras().float(), disc.config.conditioning)
    assert label.shape == (4, disc.config.conditioning.label_dim)
    logits = disc(out["image"], out["image_raw"], label)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()


def test_one_training_step_changes_generator_and_discriminator():
    generator, disc = _generator(), _discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    g_before = [p.clone() for p in generator.parameters()]
    d_before = [p.clone() for p in disc.parameters()]
    label = pose_label(torch.tensor(YAWS), torch.zeros(4), _cameras().float(), disc.config.conditioning)
    fake = generator(_z(), _cameras().float())
    torch.nn.functional.softplus(-disc(fake["image"], fake["image_raw"], label)).mean().backward()
    opt_g.step()
    fake = generator(_z(), _cameras().float())
    d_loss = torch.nn.functional.softplus(
        disc(fake["image"].detach(), fake["image_raw"].detach(), label)
    ).mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    assert any(not torch.equal(a, b) for a, b in zip(g_before, generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, disc.parameters(), strict=True))
