"""`avatar-platform train diffusion`: the style-space diffusion on Ray Train, tracked in MLflow.

Reads a trained generator (a model folder, a `train gan` output, or an MLflow URI); writes the
shared training output layout (see ray_job.py) whose `model/` embeds that generator.
"""

from __future__ import annotations

from pathlib import Path

from avatar_platform.core.paths import user_model_spec
from avatar_platform.formats.model_folder import load_generator, resolve_model_folder
from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
from avatar_platform.pipelines.training.diffusion.loop import train_diffusion_loop
from avatar_platform.pipelines.training.ray_job import TrainSummary, prepare, tracked_fit

EXPERIMENT = "train-diffusion"


def check_inputs(
    config: DiffusionTrainingConfig, generator: str | Path
) -> tuple[DiffusionTrainingConfig, Path]:
    """The generator's model folder as an absolute path (the workers run in another folder),
    loaded once here so that a bad one fails before Ray starts, and the config with a local
    CLIP folder made absolute too."""
    folder = Path(resolve_model_folder(user_model_spec(generator))).resolve()
    load_generator(folder)
    if config.encoder.kind == "clip":
        from avatar_platform.core.hub import model_source

        clip = model_source(config.encoder.clip_model, "CLIP image encoder")
        encoder = config.encoder.model_copy(update={"clip_model": clip})
        config = config.model_copy(update={"encoder": encoder})
    return config, folder


def run_train_diffusion(
    config: DiffusionTrainingConfig,
    generator: str | Path,
    out: Path,
    *,
    resume: bool = False,
    ray_address: str | None = None,
    track: bool = True,
    max_failures: int = 2,
) -> TrainSummary:
    """Train (or continue training) the style diffusion of `generator`."""
    config, generator_folder = check_inputs(config, generator)
    out, gpu = prepare(config, out, resume=resume, ray_address=ray_address)
    loop_config = {"config": config.model_dump(mode="json"), "generator": str(generator_folder)}
    return tracked_fit(
        train_diffusion_loop,
        loop_config,
        config,
        out=out,
        gpu=gpu,
        experiment=EXPERIMENT,
        run_name=f"diffusion-{out.name}",
        tags={"generator": user_model_spec(generator), "output": str(out)},
        track=track,
        max_failures=max_failures,
    )
