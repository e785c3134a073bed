"""The GAN step's pieces tested directly (no Ray): R1, mirroring, EMA, density regularisation, D
augmentation, and one `GanTrainer.train_step` on `tiny` with and without the mask channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.augment import AugmentConfig, adjust_p, augment
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.losses import density_l1, ema_beta, mirror_cameras, r1_penalty
from avatar_platform.pipelines.training.gan.trainer import GanTrainer

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")


def _cameras(yaws) -> torch.Tensor:
    return torch.tensor(np.stack([camera_from_angles(y, 10.0, CameraConfig()) for y in yaws])).float()


def test_r1_equals_its_analytic_value_on_a_known_function():
    a = torch.tensor([1.0, -2.0, 3.0])
    x = torch.randn(5, 3, requires_grad=True)
    y = torch.randn(5, 2, requires_grad=True)
    logits = (x * a).sum(dim=1) + (y**2).sum(dim=1)  # ∇x = a, ∇y = 2y
    expected = a.square().sum() + (2 * y).square().sum(dim=1)
    torch.testing.assert_close(r1_penalty(logits, [x, y]), expected.detach())


def test_mirroring_twice_is_the_identity_and_flips_the_yaw():
    cams = _cameras([30.0, -100.0, 180.0])
    torch.testing.assert_close(mirror_cameras(mirror_cameras(cams)), cams)
    mirrored = mirror_cameras(cams)
    torch.testing.assert_close(mirrored, _cameras([-30.0, 100.0, 180.0]), atol=1e-5, rtol=0)


def test_ema_half_life_and_density_regulariser():
    assert ema_beta(1000, 1.0) == pytest.approx(0.5)
    assert ema_beta(8, 0.0) == 0.0

    def constant(ws, points):
        return torch.ones(points.shape[0], points.shape[1], 1)

    assert float(density_l1(constant, torch.zeros(2, 3, 4), 1.0, 16, 0.01)) == 0.0

    def ramp(ws, points):
        return points[..., :1] * 100

    assert float(density_l1(ramp, torch.zeros(2, 3, 4), 1.0, 64, 0.01)) > 0.1


def _stack(n: int = 6, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(n, 6, size, size, generator=g) * 2 - 1
    mask = (torch.rand(n, 1, size, size, generator=g) > 0.5).float() * 2 - 1
    return torch.cat([rgb, mask], dim=1)


def test_augmentation_is_off_at_p_zero_and_moves_image_and_mask_together():
    x = _stack()
    config = AugmentConfig(mode="fixed", p=1.0, color=False, cutout=0.0)
    assert augment(x, 0.0, config, 6) is x
    out = augment(x, 1.0, config, 6, torch.Generator().manual_seed(1))
    assert not torch.equal(out, x)
    # a translation moves whole pixels: every value is one of the input's, in every channel alike
    for sample in range(len(x)):
        moved = out[sample].reshape(7, -1)
        source = x[sample].reshape(7, -1)
        index = [int((source[0] == v).nonzero()[0]) for v in moved[0]]
        torch.testing.assert_close(moved, source[:, index])


def test_colour_changes_rgb_only_and_cutout_hits_every_channel():
    x = _stack()
    colour = augment(
        x, 1.0, AugmentConfig(mode="fixed", translation=0, cutout=0), 6, torch.Generator().manual_seed(2)
    )
    assert torch.equal(colour[:, 6:], x[:, 6:])
    assert not torch.allclose(colour[:, :6], x[:, :6])
    cut = augment(
        x,
        1.0,
        AugmentConfig(mode="fixed", translation=0, color=False, cutout=0.5),
        6,
        torch.Generator().manual_seed(3),
    )
    holes = (cut == 0).all(dim=1).flatten(1).sum(dim=1)  # zero in all 7 channels at once
    # an 8×8 square (half the side), clipped to a quarter at worst where its centre is a corner
    assert holes.min() >= 16 and holes.max() <= 64
    assert torch.equal(cut[cut != 0], x[cut != 0])


def test_ada_raises_p_when_d_overfits_and_lowers_it_otherwise():
    config = AugmentConfig(mode="ada", speed_kimg=1.0, target=0.6)
    assert adjust_p(0.1, 0.9, 100, config) == pytest.approx(0.2)
    assert adjust_p(0.1, 0.2, 100, config) == pytest.approx(0.0)
    assert adjust_p(0.1, 0.9, 100, AugmentConfig(mode="fixed")) == 0.1


def _batch(n: int = 4, masks: bool = True) -> dict:
    size = TINY.generator.img_resolution
    yaws = [0.0, 90.0, 180.0, -90.0][:n]
    g = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
        "yaw": torch.tensor(yaws),
        "pitch": torch.full((n,), 10.0),
        "camera": _cameras(yaws),
    }
    if masks:
        batch["mask"] = (torch.rand(n, 1, size, size, generator=g) > 0.5).to(torch.uint8) * 255
    return batch


def _config(mask_channel: bool, background: str = "stylegan2", aug: str = "ada"):
    data = TINY.model_dump()
    data["generator"]["background"] = background
    data["discriminator"]["mask_channel"] = mask_channel
    data["augment"].update(mode=aug, p=0.5, interval=1)
    return GanTrainingConfig.model_validate(data)


def _weights(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.mark.parametrize("mask_channel", [False, True])
def test_one_train_step_moves_g_d_and_g_ema(mask_channel):
    trainer = GanTrainer(_config(mask_channel))
    before = {name: _weights(getattr(trainer, name)) for name in ("G", "D", "G_ema")}
    metrics = trainer.train_step(_batch())
    for name, weights in before.items():
        assert not torch.equal(weights, _weights(getattr(trainer, name))), name
    assert np.isfinite(metrics["loss/G"]) and np.isfinite(metrics["loss/D"])
    assert "loss/r1" in metrics  # step 0 is an R1 step (r1_interval 2)


@pytest.mark.parametrize("mask_resolution", ["image", "raw"])
def test_real_masks_at_the_raw_resolution_are_as_soft_as_the_generators_opacity(mask_resolution):
    # the generator renders its opacity at the neural-rendering resolution, so D sees it with
    # soft edges; `raw` brings the dataset's hard masks through the same resolution
    config = _config(True, aug="off").model_copy(
        update={"mask_resolution": mask_resolution, "blur_sigma": 0.0}
    )
    trainer = GanTrainer(config)
    seen = []
    trainer.D.register_forward_pre_hook(lambda module, args: seen.append(args[3].detach().clone()))
    trainer.train_step(_batch())
    hard = [m for m in seen if torch.all((m == 1) | (m == -1))]
    if mask_resolution == "image":
        assert hard  # the dataset's masks, as they are
    else:
        assert not hard and len(seen) >= 3  # G's step, then D's fake and real


def test_the_mask_channel_without_masks_is_one_clear_error():
    trainer = GanTrainer(_config(True))
    with pytest.raises(ValueError, match="mask_channel is on but the batch has no 'mask'"):
        trainer.train_step(_batch(masks=False))


def test_the_augment_probability_survives_save_and_load(tmp_path):
    trainer = GanTrainer(_config(True))
    trainer.augment_p = 0.37
    trainer.save(tmp_path)
    again = GanTrainer(_config(True))
    again.load(tmp_path)
    assert again.augment_p == pytest.approx(0.37)


def test_masks_auto_follows_the_dataset_and_on_needs_masks():
    from avatar_platform.core.errors import AvatarPlatformError
    from avatar_platform.pipelines.training.gan.config import with_dataset_masks

    auto = TINY.model_copy(update={"masks": "auto"})
    assert with_dataset_masks(auto, True).discriminator.mask_channel is True
    assert with_dataset_masks(auto, False).discriminator.mask_channel is False
    off = TINY.model_copy(update={"masks": "off"})
    assert with_dataset_masks(off, True).discriminator.mask_channel is False
    on = TINY.model_copy(update={"masks": "on"})
    assert with_dataset_masks(on, True).discriminator.mask_channel is True
    with pytest.raises(AvatarPlatformError, match="no foreground masks") as err:
        with_dataset_masks(on, False)
    assert "set gan.masks: auto" in str(err.value)
