"""Image encoders behind one interface: (B, 3, H, W) in [-1, 1] → (B, embed_dim).

`clip`: a CLIP vision tower with its projection (transformers; a hub id or a local folder — the
paper's choice), frozen. `cnn`: a small convolutional encoder trained jointly with the denoiser,
for machines without CLIP weights. Saved as `image_encoder.json` (+ `.safetensors` for the CNN,
+ the CLIP folder `image_encoder_clip/`), so a model folder carries its encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from avatar_platform.core.config import StrictConfig
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.models.checkpoint import FORMAT_VERSION, load_module, save_module

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_FOLDER = "image_encoder_clip"
NAME = "image_encoder"


class ImageEncoderConfig(StrictConfig):
    """Which encoder, and the CNN's sizes."""

    kind: Literal["cnn", "clip"] = Field("cnn", description="cnn (built in) or clip")
    clip_model: str = Field(
        "openai/clip-vit-large-patch14", description="CLIP hub id or local folder (kind clip)"
    )
    image_size: int = Field(64, ge=8, description="the CNN's input side")
    channels: int = Field(32, ge=4, description="the CNN's first-layer channels")
    embed_dim: int = Field(256, ge=4, description="the CNN's embedding size")


class CnnImageEncoder(nn.Module):
    """Strided convolutions → global average pool → linear → layer norm."""

    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        self.config = config
        c = config.channels
        widths = [3, c, 2 * c, 4 * c, 4 * c]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.GroupNorm(min(8, cout), cout),
                nn.SiLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(widths[-1], config.embed_dim), nn.LayerNorm(config.embed_dim))
        self.trainable = True

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def input_size(self) -> int:
        return self.config.image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        return self.project(self.features(images).mean(dim=(2, 3)))


class ClipImageEncoder(nn.Module):
    """CLIP's image embedding (vision tower + projection), frozen."""

    def __init__(self, config: ImageEncoderConfig, source: str | None = None):
        super().__init__()
        from transformers import CLIPVisionModelWithProjection

        from avatar_platform.core.hub import load_pretrained, model_source

        self.config = config
        src = source or model_source(config.clip_model, "CLIP image encoder")
        self.model = (
            load_pretrained(CLIPVisionModelWithProjection.from_pretrained, src, "CLIP image encoder")
            .eval()
            .requires_grad_(False)
        )
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.trainable = False

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def input_size(self) -> int:
        return int(self.model.config.image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.input_size
        x = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        return self.model(pixel_values=x).image_embeds


def build_image_encoder(config: ImageEncoderConfig) -> nn.Module:
    return ClipImageEncoder(config) if config.kind == "clip" else CnnImageEncoder(config)


def save_image_encoder(encoder: nn.Module, folder: str | Path) -> None:
    folder = Path(folder)
    if isinstance(encoder, CnnImageEncoder):
        save_module(encoder, encoder.config, folder, NAME)
        return
    # the CLIP weights travel with the model folder (a registered model must be self-contained)
    encoder.model.save_pretrained(folder / CLIP_FOLDER)
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": "ClipImageEncoder",
        "config": encoder.config.model_dump(mode="json"),
    }
    (folder / f"{NAME}.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_image_encoder(folder: str | Path, map_location: str = "cpu") -> nn.Module:
    folder = Path(folder)
    meta_path = folder / f"{NAME}.json"
    if not meta_path.is_file():
        raise AvatarPlatformError(
            f"'{folder}' holds no image encoder ({meta_path.name})",
            expected="a `train diffusion` model folder",
            fix="pass the --out of `avatar-platform train diffusion`",
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("architecture") == "ClipImageEncoder":
        config = ImageEncoderConfig.model_validate(meta["config"])
        return ClipImageEncoder(config, source=str(folder / CLIP_FOLDER)).to(map_location)
    return load_module(CnnImageEncoder, ImageEncoderConfig, folder, NAME, map_location)
