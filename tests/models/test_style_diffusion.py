"""The style-space diffusion's networks and schedule on tiny sizes (docs/method.md §4)."""

from __future__ import annotations

import pickle

import pytest
import torch

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.models.style_diffusion.denoiser import StyleDenoiser, StyleDenoiserConfig
from avatar_platform.models.style_diffusion.encoders import (
    CnnImageEncoder,
    ImageEncoderConfig,
    build_image_encoder,
    load_image_encoder,
    save_image_encoder,
)
from avatar_platform.models.style_diffusion.schedule import (
    DiffusionScheduleConfig,
    guided_prediction,
    sample_w,
    training_scheduler,
)
from avatar_platform.pipelines.datagen.tiny_models import build_random_clip_vision

DENOISER = StyleDenoiserConfig(w_dim=16, cond_dim=8, width=32, layers=2, heads=4)
CNN = ImageEncoderConfig(kind="cnn", image_size=32, channels=8, embed_dim=8)


def _denoiser(seed: int = 0) -> StyleDenoiser:
    torch.manual_seed(seed)
    model = StyleDenoiser(DENOISER).eval()
    with torch.no_grad():  # a trained null embedding is not zero; make the test see it
        model.null_cond.normal_()
    return model


def _inputs(batch: int = 3):
    gen = torch.Generator().manual_seed(1)
    return (
        torch.randn(batch, 16, generator=gen),
        torch.randint(0, 1000, (batch,), generator=gen),
        torch.randn(batch, 8, generator=gen),
    )


def test_denoiser_shapes_and_shape_errors():
    x, t, cond = _inputs()
    assert _denoiser()(x, t, cond).shape == (3, 16)
    assert _denoiser()(x, t, None).shape == (3, 16)
    with pytest.raises(ValueError, match=r"w_t must be \(B, 16\)"):
        _denoiser()(torch.zeros(3, 15), t, cond)
    with pytest.raises(ValueError, match=r"cond must be \(3, 8\)"):
        _denoiser()(x, t, torch.zeros(3, 7))


def test_denoiser_is_deterministic_and_the_condition_matters():
    x, t, cond = _inputs()
    torch.testing.assert_close(_denoiser()(x, t, cond), _denoiser()(x, t, cond))
    assert not torch.allclose(_denoiser()(x, t, cond), _denoiser()(x, t, None))
    assert not torch.allclose(_denoiser(0)(x, t, cond), _denoiser(1)(x, t, cond))


def test_dropping_the_condition_is_the_unconditional_prediction():
    x, t, cond = _inputs()
    model = _denoiser()
    drop = torch.tensor([True, False, True])
    mixed = model(x, t, cond, drop)
    torch.testing.assert_close(mixed[0], model(x, t, None)[0])
    torch.testing.assert_close(mixed[1], model(x, t, cond)[1])


def test_denoiser_save_load_and_pickle_round_trip(tmp_path):
    model = _denoiser()
    model.set_w_statistics(torch.randn(64, 16) * 3 + 1)
    model.save_pretrained(tmp_path)
    x, t, cond = _inputs()
    for other in (StyleDenoiser.from_pretrained(tmp_path).eval(), pickle.loads(pickle.dumps(model))):
        torch.testing.assert_close(other(x, t, cond), model(x, t, cond))
        torch.testing.assert_close(other.w_std, model.w_std)
    w = torch.randn(5, 16)
    torch.testing.assert_close(model.denormalize(model.normalize(w)), w)


def test_w_statistics_normalise_to_zero_mean_unit_std():
    model = _denoiser()
    ws = torch.randn(4096, 16) * 5 + 2
    model.set_w_statistics(ws)
    normalised = model.normalize(ws)
    assert normalised.mean().abs() < 0.01 and (normalised.std(dim=0) - 1).abs().max() < 0.01


def test_cnn_encoder_shapes_any_input_size_and_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = build_image_encoder(CNN).eval()
    assert isinstance(encoder, CnnImageEncoder) and encoder.trainable
    images = torch.rand(2, 3, 40, 40) * 2 - 1
    assert encoder(images).shape == (2, 8)
    save_image_encoder(encoder, tmp_path)
    torch.testing.assert_close(load_image_encoder(tmp_path).eval()(images), encoder(images))


def test_clip_encoder_loads_a_saved_model_frozen_and_travels_with_the_folder(tmp_path):
    source = build_random_clip_vision(tmp_path / "clip")
    encoder = build_image_encoder(ImageEncoderConfig(kind="clip", clip_model=source))
    assert not encoder.trainable and encoder.embed_dim == 12 and encoder.input_size == 32
    assert not any(p.requires_grad for p in encoder.parameters())
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    embeds = encoder(images)
    assert embeds.shape == (2, 12)
    save_image_encoder(encoder, tmp_path / "model")
    (tmp_path / "clip").rename(tmp_path / "moved")  # the model folder needs no outside weights
    torch.testing.assert_close(load_image_encoder(tmp_path / "model")(images), embeds)


def test_a_clip_path_that_does_not_exist_is_one_clear_error(tmp_path):
    with pytest.raises(AvatarPlatformError, match="CLIP image encoder .* does not exist"):
        build_image_encoder(ImageEncoderConfig(kind="clip", clip_model=str(tmp_path / "nope")))


def test_a_folder_without_an_encoder_is_one_clear_error(tmp_path):
    with pytest.raises(AvatarPlatformError, match="holds no image encoder"):
        load_image_encoder(tmp_path)


def test_guidance_zero_is_unconditional_one_is_conditional_and_between_is_linear():
    x, t, cond = _inputs()
    model = _denoiser()
    unconditional, conditional = model(x, t, None), model(x, t, cond)
    torch.testing.assert_close(guided_prediction(model, x, t, cond, 0.0), unconditional)
    torch.testing.assert_close(guided_prediction(model, x, t, cond, 1.0), conditional)
    torch.testing.assert_close(
        guided_prediction(model, x, t, cond, 3.0), 3.0 * conditional - 2.0 * unconditional
    )


class _Oracle(torch.nn.Module):
    """The exact prediction for data ~ N(0, I): E[ε | x_t] = sqrt(1 − ᾱ_t) · x_t and
    E[x_0 | x_t] = sqrt(ᾱ_t) · x_t."""

    def __init__(self, alphas, prediction):
        super().__init__()
        self.alphas, self.prediction = alphas, prediction
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.config = StyleDenoiserConfig(w_dim=64, cond_dim=8, width=32, heads=4)

    def forward(self, x, t, cond=None, drop=None):
        a = self.alphas[t.long()][:, None]
        return (a if self.prediction == "sample" else 1 - a).sqrt() * x

    def denormalize(self, x):
        return x


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver"])
def test_samplers_turn_a_perfect_denoiser_into_the_data_distribution(sampler, prediction):
    config = DiffusionScheduleConfig(sampler=sampler, inference_steps=20, prediction=prediction)
    oracle = _Oracle(training_scheduler(config).alphas_cumprod, prediction)
    w = sample_w(oracle, None, config, batch=2000, generator=torch.Generator().manual_seed(0))
    assert w.shape == (2000, 64)
    assert abs(float(w.mean())) < 0.02 and abs(float(w.std()) - 1.0) < 0.06


def test_sampling_is_seeded():
    model = _denoiser()
    _, _, cond = _inputs()
    config = DiffusionScheduleConfig(num_train_timesteps=100, inference_steps=4)

    def draw(seed):
        return sample_w(model, cond, config, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(draw(3), draw(3))
    assert not torch.allclose(draw(3), draw(4))
