"""The foreground-aware GAN's networks: the 2D background and its compositing, the mask-aware D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.models.discriminator import DualDiscriminator
from avatar_platform.models.eg3d.background import pull_push_extend, resize
from avatar_platform.models.eg3d.generator import TriPlaneGenerator
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")


def _cameras(yaws=(0.0, 90.0, 180.0)) -> torch.Tensor:
    return torch.tensor(np.stack([camera_from_angles(y, 0.0, CameraConfig()) for y in yaws])).float()


def _generator(background: str = "stylegan2", seed: int = 0, sr_input: str = "volume") -> TriPlaneGenerator:
    torch.manual_seed(seed)
    return TriPlaneGenerator(
        TINY.generator.model_copy(update={"background": background, "sr_input": sr_input})
    )


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


@pytest.mark.parametrize("sr_input", ["volume", "composite", "features", "extended"])
def test_an_empty_volume_shows_only_the_background(sr_input):
    generator = _generator(sr_input=sr_input)
    _density_bias(generator, -1e4)
    out = _render(generator)
    assert out["opacity"].abs().max() < 1e-6
    if sr_input == "volume":  # composite: the super-resolution redraws the backdrop it is given
        torch.testing.assert_close(out["image"], out["background"], atol=1e-5, rtol=0)
    # the raw image is exactly the background network's output at the raw resolution
    cams = _cameras()
    z = torch.randn(len(cams), TINY.generator.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws = generator.map(z, cams)
        own = resize(generator.background(ws[:, -1]), TINY.generator.neural_rendering_resolution)
    torch.testing.assert_close(out["image_raw"], own[:, :3], atol=1e-5, rtol=0)


def _superresolution_input(generator: TriPlaneGenerator) -> torch.Tensor:
    """The feature image (B, C, r, r) the super-resolution is given for `_render`'s batch."""
    seen = []
    handle = generator.superresolution.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    try:
        _render(generator)
    finally:
        handle.remove()
    return seen[0]


def test_features_order_gives_the_super_resolution_the_backdrops_features_where_the_volume_is_empty():
    # composite: the feature channels past colour are the volume's alone, so they step to zero at
    # the silhouette; features: the background paints them too, and an empty volume shows exactly
    # the backdrop's features in every channel
    channels = TINY.generator.decoder_features
    cams = _cameras()
    z = torch.randn(len(cams), TINY.generator.z_dim, generator=torch.Generator().manual_seed(1))
    seen = {}
    for sr_input in ("composite", "features"):
        generator = _generator(sr_input=sr_input)
        _density_bias(generator, -1e4)
        seen[sr_input] = _superresolution_input(generator)
        assert seen[sr_input].shape[1] == channels
    assert seen["composite"][:, 3:].abs().max() < 1e-6
    with torch.no_grad():
        backdrop = generator.background(generator.map(z, cams)[:, -1])
    assert backdrop.shape[1] == channels
    own = resize(backdrop, TINY.generator.neural_rendering_resolution)
    torch.testing.assert_close(seen["features"], own, atol=1e-5, rtol=0)
    assert seen["features"][:, 3:].abs().mean() > 1e-3


@pytest.mark.parametrize("sr_input", ["volume", "composite", "features", "extended"])
def test_a_fully_opaque_volume_shows_no_background(sr_input):
    generator = _generator(sr_input=sr_input)
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


def _identity_superresolution(generator: TriPlaneGenerator) -> None:
    """Make the super-resolution a plain ×2 bilinear upsampler of the picture it is given."""
    with torch.no_grad():
        for block in generator.superresolution.blocks:
            block.torgb.conv.weight.zero_()
            block.torgb.conv.bias.zero_()


def test_pull_push_extends_a_disc_of_one_colour_to_that_colour_everywhere():
    size = 32
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    alpha = ((((ys - 10) ** 2 + (xs - 20) ** 2) <= 36).float())[None, None]  # off-centre disc
    colour = torch.tensor([0.2, 0.7, 0.9]).view(1, 3, 1, 1)
    extension = pull_push_extend(colour * alpha, alpha)
    torch.testing.assert_close(extension, colour.expand_as(extension), atol=1e-5, rtol=0)
    extended = colour * alpha + (1 - alpha) * extension  # no step at the silhouette
    torch.testing.assert_close(extended, colour.expand_as(extended), atol=1e-5, rtol=0)
    # two colours: far from both, a blend; beside each disc, mostly its own colour
    other = ((((ys - 25) ** 2 + (xs - 5) ** 2) <= 9).float())[None, None]
    second = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    both = pull_push_extend(colour * alpha + second * other, alpha + other)
    assert (both[0, 1, 10, 27] - colour[0, 1, 0, 0]).abs() < (both[0, 1, 10, 27] - second[0, 1, 0, 0]).abs()
    assert (both[0, 0, 25, 9] - second[0, 0, 0, 0]).abs() < (both[0, 0, 25, 9] - colour[0, 0, 0, 0]).abs()
    assert pull_push_extend(torch.zeros(1, 3, size, size), torch.zeros(1, 1, size, size)).abs().max() == 0


def test_extended_order_unpremultiplies_a_half_transparent_volume_for_the_super_resolution():
    # α ≈ 0.49 everywhere: composite hands the SR the premultiplied features (α·f), extended
    # composites them over their own extension, i.e. the features themselves (no dimming, no step)
    seen = {}
    for sr_input in ("composite", "extended"):
        generator = _generator(sr_input=sr_input)
        _density_bias(generator, 1.0)
        seen[sr_input] = _superresolution_input(generator)
        opacity = _render(generator)["opacity"]
        assert opacity.min() > 0.3 and opacity.max() < 0.7
    torch.testing.assert_close(seen["extended"][:, :3], seen["composite"][:, :3])
    ratio = seen["extended"][:, 3:] / seen["composite"][:, 3:].clamp_min(1e-6)
    assert ratio.mean() > 1.5  # the dimming by α ≈ 0.49 is undone (about ×2) ...
    assert (seen["extended"][:, 3:] <= 1.0 + 1e-3).all()  # ... into the decoder's [0, 1] range


def test_composite_order_super_resolves_the_true_blend_without_a_dark_fringe():
    # a half-transparent volume everywhere (α ≈ 0.49), and a super-resolution that only upsamples:
    # the picture must be the true blend α·colour + (1 − α)·background, upscaled
    volume = _generator()
    composite = TriPlaneGenerator(volume.config.model_copy(update={"sr_input": "composite"}))
    composite.load_state_dict(volume.state_dict())
    for generator in (volume, composite):
        _density_bias(generator, 1.0)
        _identity_superresolution(generator)
    old, new = _render(volume), _render(composite)
    alpha = new["opacity"]
    assert alpha.min() > 0.3 and alpha.max() < 0.7
    # both orders blend the same raw picture (one divides the opacity out, the other needs not)
    torch.testing.assert_close(new["image_raw"], old["image_raw"], atol=1e-4, rtol=0)
    size = TINY.generator.img_resolution
    upscaled = torch.nn.functional.interpolate(new["image_raw"], size=(size, size), mode="bilinear")
    torch.testing.assert_close(new["image"], upscaled, atol=1e-5, rtol=0)
    # the volume order dims the premultiplied colour a second time: 2·α·c·(1 − α) darker
    assert (old["image"] - new["image"]).mean() < -0.05


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
