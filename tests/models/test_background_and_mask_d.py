"""The foreground-aware GAN's networks: the 2D background and its compositing, the mask-aware D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.models.discriminator import DualDiscriminator
from avatar_platform.models.eg3d.background import resize
from avatar_platform.models.eg3d.generator import TriPlaneGenerator
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")


def _cameras(yaws=(0.0, 90.0, 180.0)) -> torch.Tensor:
    return torch.tensor(np.stack([camera_from_angles(y, 0.0, CameraConfig()) for y in yaws])).float()


def _generator(background: str = "stylegan2", seed: int = 0) -> TriPlaneGenerator:
    torch.manual_seed(seed)
    return TriPlaneGenerator(TINY.generator.model_copy(update={"background": background}))


def _render(generator: TriPlaneGenerator, seed: int = 1) -> dict:
    cams = _cameras()
    z = torch.randn(len(cams), TINY.generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.synthesis(generator.map(z, cams), cams)


def _density_bias(generator: TriPlaneGenerator, value: float) -> None:
    """Make every point of the volume empty (very negative raw density) or fully opaque."""
    with torch.no_grad():
        generator.decoder.out.weight[0].zero_()
        generator.decoder.out.bias[0] = value / generator.decoder.out.bias_gain


def test_background_outputs_and_shapes():
    out = _render(_generator())
    size, raw = TINY.generator.img_resolution, TINY.generator.neural_rendering_resolution
    assert out["background"].shape == (3, 3, size, size)
    assert out["image"].shape == (3, 3, size, size)
    assert out["image_raw"].shape == (3, 3, raw, raw)
    assert out["opacity"].shape == (3, 1, raw, raw)
    assert "background" not in _render(_generator("none"))


def test_an_empty_volume_shows_only_the_background():
    generator = _generator()
    _density_bias(generator, -1e4)
    out = _render(generator)
    assert out["opacity"].abs().max() < 1e-6
    torch.testing.assert_close(out["image"], out["background"], atol=1e-5, rtol=0)
    # the raw image is exactly the background network's output at the raw resolution
    cams = _cameras()
    z = torch.randn(len(cams), TINY.generator.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws = generator.map(z, cams)
        own = resize(generator.background(ws[:, -1]), TINY.generator.neural_rendering_resolution)
    torch.testing.assert_close(out["image_raw"], own, atol=1e-5, rtol=0)


def test_a_fully_opaque_volume_shows_no_background():
    generator = _generator()
    _density_bias(generator, 1e4)
    first = _render(generator)
    assert torch.allclose(first["opacity"], torch.ones_like(first["opacity"]), atol=1e-5)
    with torch.no_grad():  # a very different background must not change a single pixel
        for p in generator.background.parameters():
            p.add_(torch.randn_like(p))
    second = _render(generator)
    assert not torch.allclose(first["background"], second["background"])
    torch.testing.assert_close(first["image"], second["image"], atol=1e-5, rtol=0)
    torch.testing.assert_close(first["image_raw"], second["image_raw"], atol=1e-5, rtol=0)


def test_a_generator_saved_before_backgrounds_loads_as_none(tmp_path):
    generator = _generator("none")
    generator.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "generator.json").read_text())
    meta["config"] = {k: v for k, v in meta["config"].items() if not k.startswith("background")}
    (tmp_path / "generator.json").write_text(json.dumps(meta))
    loaded = TriPlaneGenerator.from_pretrained(tmp_path)
    assert loaded.config.background == "none" and loaded.background is None
    torch.testing.assert_close(_render(loaded)["image"], _render(generator)["image"])


def _mask_discriminator() -> DualDiscriminator:
    torch.manual_seed(1)
    return DualDiscriminator(TINY.discriminator.model_copy(update={"mask_channel": True}))


def _d_inputs(n: int = 4):
    size, raw = TINY.discriminator.img_resolution, TINY.generator.neural_rendering_resolution
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    image_raw = torch.rand(n, 3, raw, raw, generator=g) * 2 - 1
    label = torch.zeros(n, TINY.discriminator.conditioning.label_dim)
    label[:, 0] = 1
    return image, image_raw, label


def test_the_mask_aware_discriminator_changes_its_output_with_the_mask():
    d = _mask_discriminator()
    image, image_raw, label = _d_inputs()
    raw = TINY.generator.neural_rendering_resolution
    full = torch.ones(4, 1, raw, raw)
    empty = -torch.ones(4, 1, raw, raw)
    with torch.no_grad():
        a, b = d(image, image_raw, label, full), d(image, image_raw, label, empty)
    assert a.shape == (4, 1)
    assert (a - b).abs().min() > 1e-4


def test_the_mask_channel_is_required_exactly_when_configured():
    image, image_raw, label = _d_inputs()
    with pytest.raises(ValueError, match="pass mask"):
        _mask_discriminator()(image, image_raw, label)
    plain = DualDiscriminator(TINY.discriminator)
    with pytest.raises(ValueError, match="no mask channel"):
        plain(image, image_raw, label, torch.zeros(4, 1, 16, 16))
