"""The `controlnet` backend on tiny random-weight models: save → load → generate, offline."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.datagen.backend import ImageRequest
from avatar_platform.pipelines.datagen.controlnet_backend import (
    ControlNetBackend,
    ControlNetBackendConfig,
    controlnet_identity,
)
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.poses.conditioning import render_conditions
from avatar_platform.pipelines.poses.template import bust_for_seed

RES = 32


def _config(tiny_sd, **kwargs) -> ControlNetBackendConfig:
    return ControlNetBackendConfig(**tiny_sd, steps=2, batch_size=2, **kwargs)


def _requests(n: int) -> list[ImageRequest]:
    out = []
    for i in range(n):
        cond = render_conditions(bust_for_seed(i), camera_from_angles(30.0 * i, 0.0, CameraConfig()), RES)
        out.append(
            ImageRequest(
                prompt=f"a pixar character, view {i}",
                negative_prompt="blurry",
                seed=100 + i,
                openpose=cond.openpose,
                depth=cond.depth,
                style="pixar",
                avatar_seed=i,
                render_yaw=30.0 * i,
                render_pitch=0.0,
            )
        )
    return out


@pytest.fixture(scope="module")
def hybrid_backend(tiny_sd):
    return ControlNetBackend(_config(tiny_sd, guidance="hybrid"))


def test_hybrid_backend_loads_saved_tiny_models_and_generates(hybrid_backend, tiny_sd):
    assert hybrid_backend.num_controlnets == 2
    images = hybrid_backend.generate(_requests(3), RES)
    assert len(images) == 3
    for image in images:
        assert image.shape == (RES, RES, 3) and image.dtype == np.uint8
    assert not np.array_equal(images[0], images[1])  # different seeds and conditions
    identity = hybrid_backend.identity()
    assert identity["models"]["sd_model"] == tiny_sd["sd_model"]
    assert set(identity["models"]) == {"sd_model", "openpose_controlnet", "depth_controlnet"}


def test_same_seed_gives_the_same_image_whatever_the_batch(hybrid_backend):
    requests = _requests(3)
    batched = hybrid_backend.generate(requests, RES)
    alone = hybrid_backend.generate(requests[2:], RES)
    np.testing.assert_array_equal(batched[2], alone[0])


def test_the_condition_images_steer_the_output(hybrid_backend):
    request = _requests(1)[0]
    blank = ImageRequest(
        **{
            **request.__dict__,
            "openpose": np.zeros_like(request.openpose),
            "depth": np.zeros_like(request.depth),
        }
    )
    guided, unguided = hybrid_backend.generate([request, blank], RES)
    assert not np.array_equal(guided, unguided)


@pytest.mark.parametrize("guidance", ["openpose", "depth"])
def test_single_controlnet_modes(tiny_sd, guidance):
    backend = ControlNetBackend(_config(tiny_sd, guidance=guidance, scheduler="ddim"))
    assert backend.num_controlnets == 1
    assert list(backend.identity()["models"]) == ["sd_model", f"{guidance}_controlnet"]
    (image,) = backend.generate(_requests(1), RES)
    assert image.shape == (RES, RES, 3)


def test_missing_model_folder_is_one_clear_error(tiny_sd, tmp_path):
    config = _config(tiny_sd).model_copy(update={"sd_model": str(tmp_path / "no-such-model")})
    with pytest.raises(AvatarPlatformError, match="Stable Diffusion model .* does not exist"):
        controlnet_identity(config)


def test_hub_id_offline_and_not_cached_is_one_clear_error(tiny_sd):
    config = _config(tiny_sd).model_copy(update={"depth_controlnet": "nobody/not-a-controlnet"})
    with pytest.raises(AvatarPlatformError, match="hub is offline"):
        ControlNetBackend(config)


def test_a_folder_that_is_not_a_model_is_one_clear_error(tiny_sd, tmp_path):
    (tmp_path / "empty").mkdir()
    config = _config(tiny_sd).model_copy(update={"openpose_controlnet": str(tmp_path / "empty")})
    with pytest.raises(AvatarPlatformError, match="cannot load the openpose controlnet"):
        ControlNetBackend(config)
