"""Image → avatar through the style diffusion (tiny models): shapes, seeds, guidance, errors."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import load_generator
from avatar_platform.pipelines.inference.pyfunc import load_model
from avatar_platform.pipelines.inference.style_sampling import ws_from_image


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))


def test_an_image_gives_several_different_avatars_reproducibly(tiny_diffusion):
    generator = load_generator(tiny_diffusion)
    ws = ws_from_image(tiny_diffusion, generator, _picture(0), num_samples=3, seed=1)
    assert ws.shape == (3, generator.mapping.num_ws, generator.config.w_dim)
    assert torch.isfinite(ws).all()
    assert not torch.allclose(ws[0], ws[1])  # the samples show the diversity
    torch.testing.assert_close(ws, ws_from_image(tiny_diffusion, generator, _picture(0), 3, seed=1))


def test_the_picture_steers_the_avatar_unless_guidance_is_zero(tiny_diffusion):
    generator = load_generator(tiny_diffusion)

    def ws(picture, guidance):
        return ws_from_image(tiny_diffusion, generator, picture, 1, guidance=guidance, seed=2)

    assert not torch.allclose(ws(_picture(0), 2.0), ws(_picture(1), 2.0))
    torch.testing.assert_close(ws(_picture(0), 0.0), ws(_picture(1), 0.0))


def test_a_generator_only_model_cannot_take_a_picture(tiny_generator):
    with pytest.raises(AvatarPlatformError, match="no style diffusion"):
        ws_from_image(tiny_generator, load_generator(tiny_generator), _picture(0))


def test_the_pyfunc_model_turns_uploaded_bytes_into_avatars(tiny_diffusion):
    buffer = io.BytesIO()
    _picture(0).save(buffer, format="PNG")
    model = load_model(tiny_diffusion)
    assert model.has_image_conditioning
    frame = pd.DataFrame({"image": [buffer.getvalue()], "num_samples": [2], "views": [3]})
    out = model.predict(frame)
    assert list(out["sample"]) == [0, 1] and list(out["request"]) == [0, 0]
    strip = Image.open(io.BytesIO(out["views_png"][0]))
    assert strip.size == (3 * 32, 32)
    with pytest.raises(AvatarPlatformError, match="truncated|damaged"):
        model.predict(pd.DataFrame({"image": [buffer.getvalue()[:60]]}))
