"""One worker's share of a character LoRA, in the way diffusers' own LoRA training does it.

The base Stable Diffusion pipeline is frozen; peft puts rank-r adapters on the UNet's attention
(and optionally the text encoder's); the loss is the noise-prediction MSE under the base's DDPM
schedule. The product is `pytorch_lora_weights.safetensors` (diffusers' LoRA format, loadable by
`pipe.load_lora_weights`) beside `lora.json` (token, base, rank, step).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.hub import load_pretrained, model_source
from avatar_platform.formats.lora_folder import LORA_FORMAT_VERSION, LORA_META, LORA_WEIGHTS
from avatar_platform.formats.training_state import load_training_state, save_training_state
from avatar_platform.pipelines.training.gan.losses import average_gradients
from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import TrainingImage, augment, default_caption

TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]  # CLIP's attention
SAMPLE_GUIDANCE = 7.5  # Stable Diffusion 1.5's default classifier-free guidance


def text_encoder_adapter_problem() -> str | None:
    """Why an adapter cannot go on the text encoder here, or None when it can.

    transformers puts peft adapters on its models only with a recent enough peft (it checks at
    `add_adapter` / `load_adapter`), and `generate` loads a text-encoder LoRA through the same
    check; refusing up front beats failing after the base model has loaded."""
    import peft
    from packaging.version import Version

    try:
        from transformers.integrations.peft import MIN_PEFT_VERSION
    except ImportError:  # an older transformers without the constant has no such check
        return None
    if Version(peft.__version__) < Version(MIN_PEFT_VERSION):
        return (
            f"an adapter on the text encoder needs peft >= {MIN_PEFT_VERSION} with this "
            f"transformers, and peft {peft.__version__} is installed"
        )
    return None


def weight_dtype(config: LoraTrainingConfig, device: torch.device) -> torch.dtype:
    """The frozen base's dtype: fp16 on CUDA unless mixed precision is off (the adapter is fp32)."""
    if config.mixed_precision == "fp16" or (config.mixed_precision == "auto" and device.type == "cuda"):
        return torch.float16
    return torch.float32


def load_base_pipeline(source: str, dtype: torch.dtype = torch.float32):
    """The Stable Diffusion pipeline named by a local folder or hub id, without a safety checker."""
    from diffusers import StableDiffusionPipeline

    return load_pretrained(
        StableDiffusionPipeline.from_pretrained,
        model_source(source, "Stable Diffusion model"),
        "Stable Diffusion model",
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        dtype=dtype,
    )


class LoraTrainer:
    """The frozen base, its adapters, optimiser and step counter on one worker."""

    def __init__(
        self,
        config: LoraTrainingConfig,
        images: list[TrainingImage],
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ):
        from diffusers import DDPMScheduler
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        self.config, self.images = config, images
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.dtype = weight_dtype(config, self.device)
        self.fp16 = self.dtype == torch.float16
        if self.fp16 and self.device.type != "cuda":
            raise AvatarPlatformError(
                "mixed_precision fp16 needs a CUDA device", fix="set mixed_precision: auto or no"
            )
        self.pipe = load_base_pipeline(config.base, self.dtype).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.unet, self.vae = self.pipe.unet, self.pipe.vae
        self.text_encoder, self.tokenizer = self.pipe.text_encoder, self.pipe.tokenizer
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
        torch.manual_seed(config.seed)  # the same adapter initialisation on every worker
        self.unet.add_adapter(
            LoraConfig(
                r=config.rank,
                lora_alpha=config.lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(config.target_modules),
            )
        )
        self.adapted = [self.unet]
        if config.train_text_encoder:
            problem = text_encoder_adapter_problem()
            if problem:
                raise AvatarPlatformError(problem, fix="train without --train-text-encoder")
            self.text_encoder.add_adapter(
                LoraConfig(
                    r=config.rank,
                    lora_alpha=config.lora_alpha,
                    init_lora_weights="gaussian",
                    target_modules=TEXT_ENCODER_TARGETS,
                )
            )
            self.adapted.append(self.text_encoder)
        # the adapter trains in fp32 over an fp16 base (diffusers' recipe): fp16 Adam updates of
        # small LoRA weights underflow
        cast_training_params(self.adapted, dtype=torch.float32)
        self.params = torch.nn.ParameterList(
            [p for module in self.adapted for p in module.parameters() if p.requires_grad]
        )
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.fp16)
        self.noise = DDPMScheduler.from_config(self.pipe.scheduler.config)
        prediction = self.noise.config.prediction_type
        if prediction not in ("epsilon", "v_prediction"):
            raise AvatarPlatformError(
                f"the base model predicts '{prediction}'",
                expected="a Stable Diffusion model that predicts epsilon or v",
            )
        self.pixels = torch.stack([image.pixels for image in images])  # (N, 3, R, R) on the CPU
        self.input_ids = self.tokenizer(
            [image.caption for image in images],
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids.to(self.device)
        self.cached_states: torch.Tensor | None = None
        if not config.train_text_encoder:
            # a frozen text encoder gives a caption the same states at every step: encode once
            self.cached_states = self.text_states()
        self.rng = torch.Generator().manual_seed(config.seed * 1000 + rank + 1)
        self.step = 0

    @property
    def per_worker_batch(self) -> int:
        return self.config.batch_size // self.world_size

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.fp16)

    def text_states(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 77, D) text-encoder states of the captions at `indices` (all when None)."""
        if self.cached_states is not None and indices is not None:
            return self.cached_states[indices.to(self.device)]
        ids = self.input_ids if indices is None else self.input_ids[indices.to(self.device)]
        with torch.set_grad_enabled(self.config.train_text_encoder), self.autocast():
            return self.text_encoder(ids, return_dict=False)[0]

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) in [-1, 1] → (B, 4, R/8, R/8) float32 latents scaled like the UNet's."""
        pixels = pixels.to(self.device, self.dtype)
        latents = self.vae.encode(pixels).latent_dist.sample(generator=self.rng)
        return latents.float() * self.vae.config.scaling_factor

    def denoising_loss(
        self, latents: torch.Tensor, states: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """MSE between the UNet's prediction at x_t = q(x_t | latents, noise, t) and its target
        (the noise, or v for v-prediction bases)."""
        noisy = self.noise.add_noise(latents, noise, t)
        target = noise
        if self.noise.config.prediction_type == "v_prediction":
            target = self.noise.get_velocity(latents, noise, t)
        with self.autocast():
            prediction = self.unet(noisy, t, states, return_dict=False)[0]
        return F.mse_loss(prediction.float(), target.float())

    def train_step(self) -> dict[str, float]:
        started = time.perf_counter()
        n = self.per_worker_batch
        indices = torch.randint(0, len(self.images), (n,), generator=self.rng)
        latents = self.encode(augment(self.pixels[indices], self.config.augmentation, self.rng))
        noise = torch.randn(latents.shape, generator=self.rng).to(self.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (n,), generator=self.rng)
        loss = self.denoising_loss(latents, self.text_states(indices), noise, t.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        average_gradients(self.params, self.world_size)
        self.scaler.unscale_(self.opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.step += 1
        seconds = time.perf_counter() - started
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "images_per_second": n / seconds}

    @torch.no_grad()
    def sample_grid(self) -> np.ndarray:
        """(R, len(sample_seeds)·R, 3) uint8: the default caption at each fixed seed."""
        seeds = self.config.sample_seeds
        with self.autocast():
            images = self.pipe(
                prompt=[default_caption(self.config.token)] * len(seeds),
                height=self.config.resolution,
                width=self.config.resolution,
                num_inference_steps=self.config.sample_steps,
                guidance_scale=SAMPLE_GUIDANCE,
                generator=[torch.Generator().manual_seed(seed) for seed in seeds],
                output_type="np",
            ).images
        return (np.clip(np.concatenate(list(images), axis=1), 0, 1) * 255 + 0.5).astype(np.uint8)

    # -- state on disk -------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The adapters' weights in peft's naming, per adapted model."""
        from peft.utils import get_peft_model_state_dict

        out = {"unet": get_peft_model_state_dict(self.unet)}
        if self.config.train_text_encoder:
            out["text_encoder"] = get_peft_model_state_dict(self.text_encoder)
        return out

    def save(self, folder: Path, grid: np.ndarray | None = None) -> None:
        """The LoRA folder: pytorch_lora_weights.safetensors, lora.json, training_state.pt and
        samples.png (the fixed-seed samples) when `grid` is given."""
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from PIL import Image

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        adapters = self.adapter_state()
        layers = {
            f"{name}_lora_layers": convert_state_dict_to_diffusers(state) for name, state in adapters.items()
        }
        # the adapter's config (alpha above all) travels in the file's metadata, so that
        # load_lora_weights rebuilds the same scale
        metadata = {
            f"{name}_lora_adapter_metadata": module.peft_config["default"].to_dict()
            for name, module in zip(adapters, self.adapted, strict=True)
        }
        StableDiffusionPipeline.save_lora_weights(folder, weight_name=LORA_WEIGHTS, **layers, **metadata)
        if grid is not None:
            Image.fromarray(grid).save(folder / "samples.png")
        meta = {
            "kind": "styleavatar3d-lora",
            "format_version": LORA_FORMAT_VERSION,
            "token": self.config.token,
            "base": self.config.base,
            "rank": self.config.rank,
            "alpha": self.config.lora_alpha,
            "step": self.step,
            "weights": LORA_WEIGHTS,
            "captions": {image.path.name: image.caption for image in self.images},
            "training": self.config.model_dump(mode="json"),
        }
        (folder / LORA_META).write_text(json.dumps(meta, indent=2) + "\n")
        state = {
            "step": self.step,
            "adapters": adapters,
            "opt": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.rng.get_state(),
        }
        save_training_state(folder, state)

    def load(self, folder: Path) -> None:
        """Continue from a folder written by `save` (adapters, optimiser, RNG, step)."""
        from peft.utils import set_peft_model_state_dict

        state = load_training_state(folder, self.device, "LoRA", fix="start a new run in another --out")
        for name, module in zip(("unet", "text_encoder"), self.adapted, strict=False):
            set_peft_model_state_dict(module, state["adapters"][name])
        self.opt.load_state_dict(state["opt"])
        self.scaler.load_state_dict(state["scaler"])
        self.rng.set_state(state["rng"].cpu())
        self.step = int(state["step"])
