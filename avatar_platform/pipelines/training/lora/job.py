"""`avatar-platform train lora`: a character LoRA from a folder of pictures on Ray Train, tracked
in MLflow. Writes the shared training output layout (see ray_job.py) whose `model/` is the
adapter in diffusers' format, ready for `generate --backend controlnet --lora`.
"""

from __future__ import annotations

from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import user_path
from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import TrainingImage, load_training_images
from avatar_platform.pipelines.training.lora.loop import train_lora_loop
from avatar_platform.pipelines.training.ray_job import TrainSummary, prepare, tracked_fit

EXPERIMENT = "train-lora"


def check_inputs(
    config: LoraTrainingConfig, images: str | Path
) -> tuple[LoraTrainingConfig, list[TrainingImage]]:
    """The config with its base as an absolute path (workers need not share the driver's working
    folder) and the training pictures, read once here so that bad input fails before Ray starts."""
    from avatar_platform.core.hub import model_source
    from avatar_platform.pipelines.training.lora.trainer import text_encoder_adapter_problem

    pictures = load_training_images(images, config.token, config.resolution)
    config = config.model_copy(update={"base": model_source(config.base, "Stable Diffusion model")})
    if config.train_text_encoder and (problem := text_encoder_adapter_problem()):
        raise AvatarPlatformError(problem, fix="train without --train-text-encoder")
    return config, pictures


def run_train_lora(
    config: LoraTrainingConfig,
    images: str | Path,
    out: Path,
    *,
    resume: bool = False,
    ray_address: str | None = None,
    track: bool = True,
    max_failures: int = 2,
) -> TrainSummary:
    """Train (or continue training) the LoRA of the character in the `images` folder."""
    images = user_path(images)  # the workers read it, from another working folder
    config, pictures = check_inputs(config, images)
    out, gpu = prepare(config, out, resume=resume, ray_address=ray_address)
    if config.mixed_precision == "fp16" and not gpu:
        raise AvatarPlatformError(
            "mixed_precision fp16 needs GPU workers, and this run has none",
            fix="set lora.mixed_precision to auto (fp16 on GPUs, fp32 on CPUs) or no",
        )
    loop_config = {"config": config.model_dump(mode="json"), "images": str(images)}
    return tracked_fit(
        train_lora_loop,
        loop_config,
        config,
        out=out,
        gpu=gpu,
        experiment=EXPERIMENT,
        run_name=f"lora-{out.name}",
        tags={"images": str(images), "token": config.token, "output": str(out)},
        track=track,
        max_failures=max_failures,
        extra_params={"num_images": len(pictures)},
    )
