"""Stable Diffusion 1.5 + ControlNet (OpenPose, depth or both at once = hybrid guidance).

Base model and ControlNets come from a hub id or a local folder; nothing is downloaded when the hub
is offline (`HF_HUB_OFFLINE=1`): a missing model is one clear error. fp16 + channels_last on CUDA.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from avatar_platform.core.config import StrictConfig
from avatar_platform.core.digest import path_sha256
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.hub import load_pretrained, model_source
from avatar_platform.formats.lora_folder import LORA_META, LORA_WEIGHTS, lora_folder, lora_meta, lora_weights  # noqa: F401 (re-exported)
from avatar_platform.pipelines.datagen.backend import ImageRequest, mask_from_bool


class ControlNetBackendConfig(StrictConfig):
    """The diffusion backend: models, guidance and sampler."""

    sd_model: str = Field(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        description="Stable Diffusion 1.5 pipeline: hub id or local folder",
    )
    openpose_controlnet: str = Field(
        "lllyasviel/control_v11p_sd15_openpose", description="OpenPose ControlNet: hub id or folder"
    )
    depth_controlnet: str = Field(
        "lllyasviel/control_v11f1p_sd15_depth", description="depth ControlNet: hub id or folder"
    )
    guidance: Literal["openpose", "depth", "hybrid"] = Field(
        "hybrid", description="which ControlNets guide the image (hybrid = both)"
    )
    steps: int = Field(20, ge=1, le=1000, description="denoising steps")
    guidance_scale: float = Field(7.5, ge=0.0, description="classifier-free guidance scale")
    conditioning_scale: float = Field(1.0, ge=0.0, description="weight of each ControlNet")
    scheduler: Literal["unipc", "dpm-solver++", "ddim"] = Field("unipc", description="sampler")
    batch_size: int = Field(4, ge=1, description="prompts per pipeline call")
    dtype: Literal["auto", "float16", "float32"] = Field(
        "auto", description="weights dtype; auto = float16 on CUDA, float32 on CPU"
    )
    lora: str | None = Field(
        None,
        description="LoRA weights folder or file (diffusers format); the token in its lora.json "
        "replaces the style text",
    )
    lora_scale: float = Field(1.0, description="strength of the LoRA")
    matting_model: str | None = Field(
        None,
        description="image-segmentation model (hub id or folder, transformers semantic "
        "segmentation) that refines each image's mask within the dilated condition silhouette",
    )


def mask_source(config: ControlNetBackendConfig) -> str:
    """How this backend's masks are made, for the dataset card."""
    return f"matting:{config.matting_model}" if config.matting_model else "condition-silhouette"


def silhouette_dilation(resolution: int) -> int:
    """Pixels by which the condition silhouette grows into the image mask (4 at 512²).

    Stable Diffusion follows the depth/OpenPose conditions only roughly: hair, clothing edges and
    rim light spill a few pixels past the template's outline, and the VAE's 8-pixel latent grid
    blurs the boundary. A mask a little larger than the silhouette keeps that spill inside it
    (a mask-aware loss then loses little of the avatar, at the cost of a thin background band);
    the spill is a fraction of the figure, so the margin scales with the resolution.
    """
    return max(2, round(resolution / 128))


def dilate_silhouette(silhouette: np.ndarray, resolution: int) -> np.ndarray:
    """(R, R) uint8 mask (255 = foreground): `silhouette` grown by `silhouette_dilation` pixels
    (a disc-shaped structuring element)."""
    import cv2

    radius = silhouette_dilation(resolution)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return mask_from_bool(cv2.dilate((np.asarray(silhouette) > 0).astype(np.uint8), kernel) > 0)


def condition_silhouette(request: ImageRequest) -> np.ndarray:
    """The template's foreground at the planned camera: the mask the condition render carried,
    else its depth image's foreground (depth > 0; the farthest surface point is 0.1 · 255)."""
    if request.mask is not None:
        return np.asarray(request.mask) > 0
    return np.asarray(request.depth)[..., 0] > 0


def lora_token(config: ControlNetBackendConfig) -> str | None:
    """The character token that replaces the style text, when the LoRA names one."""
    token = lora_meta(config.lora).get("token") if config.lora else None
    return str(token) if token else None


def model_sources(config: ControlNetBackendConfig) -> dict[str, str]:
    """The models the config selects, as local paths or hub ids (missing paths raise)."""
    sources = {"sd_model": model_source(config.sd_model, "Stable Diffusion model")}
    if config.guidance in ("openpose", "hybrid"):
        sources["openpose_controlnet"] = model_source(config.openpose_controlnet, "OpenPose ControlNet")
    if config.guidance in ("depth", "hybrid"):
        sources["depth_controlnet"] = model_source(config.depth_controlnet, "depth ControlNet")
    return sources


def controlnet_identity(config: ControlNetBackendConfig) -> dict:
    """The backend's models and settings for the dataset card, without loading any weights."""
    out = {
        "backend": "controlnet",
        "guidance": config.guidance,
        "scheduler": config.scheduler,
        "steps": config.steps,
        "guidance_scale": config.guidance_scale,
        "models": model_sources(config),
    }
    if config.lora:
        source = model_source(config.lora, "LoRA weights")
        weights = lora_weights(source)
        out["lora"] = {
            "path": source,
            "weights": str(weights) if weights else None,
            "sha256": path_sha256(weights) if weights else None,
            "scale": config.lora_scale,
            "token": lora_token(config),
        }
    return out


class ControlNetBackend:
    """diffusers `StableDiffusionControlNetPipeline` with one or two ControlNets."""

    name = "controlnet"

    def __init__(self, config: ControlNetBackendConfig, device: str | None = None):
        import torch
        from diffusers import (
            ControlNetModel,
            DDIMScheduler,
            DPMSolverMultistepScheduler,
            MultiControlNetModel,
            StableDiffusionControlNetPipeline,
            UniPCMultistepScheduler,
        )

        self.config = config
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        use_fp16 = config.dtype == "float16" or (config.dtype == "auto" and self.device != "cpu")
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.sources = model_sources(config)
        controlnets = [
            load_pretrained(ControlNetModel.from_pretrained, src, key.replace("_", " "), dtype=self.dtype)
            for key, src in self.sources.items()
            if key.endswith("controlnet")
        ]
        controlnet = MultiControlNetModel(controlnets) if len(controlnets) > 1 else controlnets[0]
        pipe = load_pretrained(
            StableDiffusionControlNetPipeline.from_pretrained,
            self.sources["sd_model"],
            "Stable Diffusion model",
            controlnet=controlnet,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            dtype=self.dtype,
        )
        scheduler_cls = {
            "unipc": UniPCMultistepScheduler,
            "dpm-solver++": DPMSolverMultistepScheduler,
            "ddim": DDIMScheduler,
        }[config.scheduler]
        extra = {"algorithm_type": "dpmsolver++"} if config.scheduler == "dpm-solver++" else {}
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **extra)
        if config.lora:
            lora = model_source(config.lora, "LoRA weights")
            try:
                pipe.load_lora_weights(lora, adapter_name="character")
            except (OSError, ValueError, KeyError) as err:
                raise AvatarPlatformError(
                    f"cannot load the LoRA weights '{config.lora}' ({err})",
                    expected="a diffusers-format LoRA (pytorch_lora_weights.safetensors)",
                ) from None
            pipe.set_adapters(["character"], adapter_weights=[config.lora_scale])
        pipe = pipe.to(self.device)
        if self.device.startswith("cuda"):
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.controlnet.to(memory_format=torch.channels_last)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.num_controlnets = len(controlnets)
        self.matting = None
        if config.matting_model:
            from avatar_platform.pipelines.datagen.matting import MattingRefiner

            self.matting = MattingRefiner(config.matting_model, self.device)

    def _condition_images(self, requests: list[ImageRequest]):
        """One image per request for one ControlNet; [openpose, depth] per request for two."""
        from PIL import Image

        per_request = []
        for r in requests:
            images = []
            if "openpose_controlnet" in self.sources:
                images.append(Image.fromarray(r.openpose))
            if "depth_controlnet" in self.sources:
                images.append(Image.fromarray(r.depth))
            per_request.append(images if self.num_controlnets > 1 else images[0])
        return per_request

    def generate(self, requests: list[ImageRequest], resolution: int) -> list[np.ndarray]:
        import torch

        images: list[np.ndarray] = []
        scale = self.config.conditioning_scale
        for start in range(0, len(requests), self.config.batch_size):
            chunk = requests[start : start + self.config.batch_size]
            generators = [torch.Generator("cpu").manual_seed(int(r.seed)) for r in chunk]
            with torch.inference_mode():
                out = self.pipe(
                    prompt=[r.prompt for r in chunk],
                    negative_prompt=[r.negative_prompt for r in chunk],
                    image=self._condition_images(chunk),
                    height=resolution,
                    width=resolution,
                    num_inference_steps=self.config.steps,
                    guidance_scale=self.config.guidance_scale,
                    controlnet_conditioning_scale=[scale] * self.num_controlnets
                    if self.num_controlnets > 1
                    else scale,
                    generator=generators,
                    output_type="np",
                )
            images += [(np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8) for img in out.images]
        return images

    def generate_masked(
        self, requests: list[ImageRequest], resolution: int
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Images and their masks: the dilated condition silhouette, refined by the matting
        model when one is configured."""
        images = self.generate(requests, resolution)
        masks = [dilate_silhouette(condition_silhouette(r), resolution) for r in requests]
        if self.matting is not None:
            masks = self.matting.refine(images, masks)
        return images, masks

    def identity(self) -> dict:
        return {**controlnet_identity(self.config), "dtype": str(self.dtype).replace("torch.", "")}
