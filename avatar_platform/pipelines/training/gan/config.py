"""The config of `avatar-platform train gan` (section `gan` of a preset)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from avatar_platform.core.config import StrictConfig
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.models.discriminator import DiscriminatorConfig
from avatar_platform.models.eg3d.generator import GeneratorConfig
from avatar_platform.pipelines.training.gan.augment import AugmentConfig
from avatar_platform.pipelines.training.job_config import TrainingJobConfig


class MemoryConfig(StrictConfig):
    """How a training step trades compute for memory (issue #14: the paper preset on 16 GB)."""

    checkpoint_renderer: bool = Field(
        False,
        description="activation checkpointing of the renderer (tri-plane sampling, decoder, "
        "compositing): recomputed in backward, ray_chunk rays at a time",
    )
    ray_chunk: int = Field(
        1024, ge=1, description="rays per image in one checkpointed chunk (checkpoint_renderer)"
    )
    checkpoint_discriminator: bool = Field(
        False,
        description="activation checkpointing of D's residual blocks (recomputed in backward, "
        "R1's double backward included)",
    )
    compile: bool = Field(
        False,
        description="torch.compile the tri-plane decoder and the synthesis network (speed; "
        "the first steps pay the compilation)",
    )
    micro_batch: int = Field(
        0,
        ge=0,
        description="images per forward pass, gradients accumulated over the worker's batch "
        "(EG3D's --batch-gpu); 0 = the whole per-worker batch at once",
    )


class GanTrainingConfig(TrainingJobConfig):
    """Networks, losses and schedule of the GAN (EG3D's values by default, docs/method.md §2)."""

    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    batch_size: int = Field(32, ge=1, description="images per step, over all workers")
    lr_g: float = Field(0.0025, gt=0, description="generator learning rate")
    lr_d: float = Field(0.002, gt=0, description="discriminator learning rate")
    finetune_lr_scale: float = Field(
        0.2, gt=0, le=1, description="both learning rates × this in a fine-tune (train gan --init)"
    )
    betas: tuple[float, float] = Field((0.0, 0.99), description="Adam betas")
    r1_gamma: float = Field(1.0, ge=0, description="R1 weight (on image and image_raw)")
    r1_interval: int = Field(16, ge=1, description="lazy R1 every N steps")
    density_reg: float = Field(0.25, ge=0, description="density regularisation weight")
    density_reg_interval: int = Field(4, ge=1, description="density regularisation every N steps")
    density_reg_points: int = Field(1000, ge=1, description="random points per sample")
    density_reg_perturb: float = Field(0.004, gt=0, description="perturbation of those points")
    blur_sigma: float = Field(
        10.0, ge=0, description="initial D input blur, pixels (none in a fine-tune: train gan --init)"
    )
    blur_fade_kimg: float = Field(200.0, ge=0, description="blur fades out over this many kimg")
    ema_kimg: float = Field(10.0, ge=0, description="G EMA half-life in kimg")
    camera_swap_prob: float = Field(0.5, ge=0, le=1, description="P(mapping sees another camera)")
    mirror: bool = Field(True, description="yaw-mirror augmentation (image and labels)")
    masks: Literal["auto", "on", "off"] = Field(
        "auto",
        description="D judges the foreground mask: auto = when the dataset has masks (datasets "
        "written before masks train without), on = required, off = never",
    )
    mask_resolution: Literal["image", "raw"] = Field(
        "image",
        description="the real masks D judges: image = the dataset's mask at D's resolution; raw = "
        "first brought to the neural-rendering resolution, where the generator's opacity is "
        "rendered, so that real and fake masks are equally sharp (as the real raw image is)",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="D augmentation (translation, cutout, colour)"
    )
    mixed_precision: bool = Field(True, description="bf16 autocast on CUDA")
    memory: MemoryConfig = Field(
        default_factory=MemoryConfig, description="memory against compute (checkpointing)"
    )
    sample_every: int = Field(100, ge=1, description="log a sample grid every N steps")
    fid_samples: int = Field(
        256, ge=0, description="real images rank 0 keeps for FID/KID (0 = no FID in training)"
    )
    fid_every: int = Field(0, ge=0, description="FID/KID every N steps (0 = at the end only)")
    keep_best: bool = Field(
        True,
        description="write the lowest-FID G_ema so far to OUT/best/ (a model folder) at each "
        "FID point: a long run's best weights survive its later steps",
    )

    @model_validator(mode="after")
    def _sizes(self) -> GanTrainingConfig:
        if self.discriminator.img_resolution != self.generator.img_resolution:
            raise ValueError(
                f"discriminator.img_resolution ({self.discriminator.img_resolution}) must equal "
                f"generator.img_resolution ({self.generator.img_resolution})"
            )
        per_worker, micro = self.batch_size // self.workers, self.memory.micro_batch
        if micro and per_worker % micro:
            raise ValueError(
                f"memory.micro_batch {micro} must divide the per-worker batch {per_worker} "
                f"(batch_size {self.batch_size} / workers {self.workers}): use a divisor of "
                f"{per_worker}, or 0 for the whole batch at once"
            )
        return self


def with_dataset_masks(config: GanTrainingConfig, has_masks: bool) -> GanTrainingConfig:
    """The config with `discriminator.mask_channel` decided by `masks` and the dataset."""
    if config.masks == "on" and not has_masks:
        raise AvatarPlatformError(
            "gan.masks is 'on' but the dataset has no foreground masks (it was written before "
            "masks, or its card names no mask source)",
            expected="a dataset written by this version of avatar-platform generate",
            fix="regenerate the dataset, or set gan.masks: auto (or off) to train without masks",
        )
    use = config.masks == "on" or (config.masks == "auto" and has_masks)
    if use == config.discriminator.mask_channel:
        return config
    discriminator = config.discriminator.model_copy(update={"mask_channel": use})
    return config.model_copy(update={"discriminator": discriminator})
