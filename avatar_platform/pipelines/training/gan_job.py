"""`avatar-platform train gan`: a Ray Train TorchTrainer over a generated dataset, tracked in MLflow.

Output folder: `model/` (the final model folder: G, G_ema, D, training state, config),
`ray/` (Ray Train's run and checkpoints, which `--resume` continues), `run.json` (the MLflow run).
"""

from __future__ import annotations

from pathlib import Path

from avatar_platform.pipelines.training.gan_config import GanTrainingConfig
from avatar_platform.pipelines.training.gan_data import open_dataset, ray_dataset
from avatar_platform.pipelines.training.gan_loop import train_gan_loop
from avatar_platform.pipelines.training.ray_job import TrainSummary, fit, prepare, start_run

EXPERIMENT = "train-gan"


def run_train_gan(config: GanTrainingConfig, data: Path, out: Path, *, resume: bool = False,
                  ray_address: str | None = None, track: bool = True,
                  max_failures: int = 2) -> TrainSummary:  # fmt: skip
    """Train (or continue training) the GAN on the dataset in `data`."""
    card, files = open_dataset(data, config.generator.img_resolution, config.batch_size)
    # room beyond the workers for Ray Data's decode tasks
    out, gpu = prepare(config, out, resume=resume, ray_address=ray_address, extra_cpus=2)
    run_id = None
    if track:
        run_id = start_run(out, EXPERIMENT, f"gan-{out.name}", config,
                           tags={"dataset": str(Path(data).resolve()), "output": str(out)},
                           extra_params={"dataset.num_images": card["num_images"]})  # fmt: skip
    return fit(
        train_gan_loop,
        {"config": config.model_dump(mode="json")},
        out=out,
        workers=config.workers,
        gpu=gpu,
        steps=config.steps,
        max_failures=max_failures,
        run_id=run_id,
        datasets={"train": ray_dataset(files, config.generator.img_resolution, card["num_images"])},
    )
