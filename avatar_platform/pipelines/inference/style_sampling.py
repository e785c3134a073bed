"""Image → avatar: encode a picture, sample w with the style diffusion, broadcast to ws.

The diffusion replaces the mapping network (docs/method.md §4): no pose estimation or GAN inversion.
Used by `avatar-platform sample --image`, the MLflow pyfunc model and the serve API.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import DIFFUSION_FORMAT_VERSION, DIFFUSION_META, is_diffusion_folder
from avatar_platform.models.checkpoint import check_format_version
from avatar_platform.models.style_diffusion.denoiser import StyleDenoiser
from avatar_platform.models.style_diffusion.encoders import load_image_encoder
from avatar_platform.models.style_diffusion.schedule import DiffusionScheduleConfig, sample_w


@lru_cache(maxsize=4)
def load_style_diffusion(folder: Path, device: str = "cpu"):
    """(image encoder, denoiser, schedule config) of a `train diffusion` model folder, in eval."""
    folder = Path(folder)
    if not is_diffusion_folder(folder):
        raise AvatarPlatformError(
            f"'{folder}' has no style diffusion (style_denoiser.json), so it cannot turn an image into an avatar",
            expected="the output of `avatar-platform train diffusion`, or a registered "
            "styleavatar3d model trained with it",
            fix="train one with `avatar-platform train diffusion --generator <gan output>`",
        )
    meta = json.loads((folder / DIFFUSION_META).read_text())
    check_format_version(
        meta.get("format_version"),
        DIFFUSION_FORMAT_VERSION,
        f"the style diffusion '{folder}'",
        fix="sample it with the avatar-platform version that trained it, or train it again",
    )
    schedule = DiffusionScheduleConfig.model_validate(meta["schedule"])
    encoder = load_image_encoder(folder, device).eval()
    denoiser = StyleDenoiser.from_pretrained(folder, map_location=device).eval()
    return encoder, denoiser, schedule


@torch.no_grad()
def ws_from_image(
    model_folder: Path,
    generator,
    image,
    num_samples: int = 1,
    guidance: float | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> torch.Tensor:
    """ws (num_samples, num_ws, w_dim) for one RGB PIL image; samples differ by their noise."""
    from avatar_platform.formats.pictures import image_tensor

    device = next(generator.parameters()).device
    encoder, denoiser, schedule = load_style_diffusion(Path(model_folder), str(device))
    if denoiser.config.w_dim != generator.config.w_dim:
        raise AvatarPlatformError(
            f"the style diffusion in '{model_folder}' makes w of size {denoiser.config.w_dim}, "
            f"the generator takes {generator.config.w_dim}",
            fix="use the generator embedded in the diffusion model folder (its generator/)",
        )
    pixels = image_tensor(image, encoder.input_size)[None].to(device)
    cond = encoder(pixels).expand(num_samples, -1)
    w = sample_w(
        denoiser,
        cond,
        schedule,
        guidance=guidance,
        steps=steps,
        generator=torch.Generator().manual_seed(seed),
    )
    return w[:, None].expand(-1, generator.mapping.num_ws, -1)
