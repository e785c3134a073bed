"""`avatar-platform train gan`: a Ray Train TorchTrainer over a generated dataset, tracked in MLflow.

Output folder: `model/` (the final model folder: G, G_ema, D, training state, config),
`ray/` (Ray Train's run and checkpoints, which `--resume` continues), `run.json` (the MLflow run).
"""

from __future__ import annotations

from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.paths import user_path
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig, with_dataset_masks
from avatar_platform.pipelines.training.gan.data import (
    dataset_has_masks,
    open_dataset,
    ray_dataset,
    shuffle_rows,
)
from avatar_platform.pipelines.training.gan.loop import train_gan_loop
from avatar_platform.pipelines.training.ray_job import TrainSummary, describe_error, prepare, tracked_fit

EXPERIMENT = "train-gan"


def run_train_gan(
    config: GanTrainingConfig,
    data: Path,
    out: Path,
    *,
    resume: bool = False,
    ray_address: str | None = None,
    track: bool = True,
    max_failures: int = 2,
    init: str | Path | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrainSummary:
    """Train (or continue training) the GAN on the dataset in `data`; `init`: start from that
    GAN's weights (a folder or an MLflow URI) with a fresh optimiser and schedule; `extra_tags`:
    more tags of the MLflow run (an ablation names its arm)."""
    data = user_path(data)  # shard paths reach Ray tasks, whose working folder is not ours
    card, files = open_dataset(data, config.generator.img_resolution, config.batch_size)
    config = with_dataset_masks(config, dataset_has_masks(card, files))
    masks = config.discriminator.mask_channel
    parent = None
    if init is not None:  # checked here, once: a mismatch never reaches a worker
        from avatar_platform.pipelines.training.gan.init import check_init

        parent = check_init(init, config)
    # room beyond the workers for Ray Data's decode tasks
    out, gpu = prepare(config, out, resume=resume, ray_address=ray_address, extra_cpus=2)
    try:  # a small dataset is decoded here, once: an unreadable image fails before any worker
        dataset = ray_dataset(files, config.generator.img_resolution, card["num_images"], masks)
    except Exception as err:
        raise AvatarPlatformError(
            f"cannot read the dataset '{data}' ({describe_error(err)})",
            fix="regenerate the dataset (avatar-platform dataset info --verify checks it)",
        ) from None
    loop_config = {
        "config": config.model_dump(mode="json"),
        "init": str(parent) if parent else None,
        "init_label": str(init) if init is not None else None,
        "shuffle_rows": shuffle_rows(
            card["num_images"],
            config.generator.img_resolution,
            masks,
            config.workers,
            config.batch_size // config.workers,
        ),
    }
    return tracked_fit(
        train_gan_loop,
        loop_config,
        config,
        out=out,
        gpu=gpu,
        experiment=EXPERIMENT,
        run_name=f"gan-{out.name}",
        tags={"dataset": str(data), "output": str(out), **(extra_tags or {})},
        track=track,
        max_failures=max_failures,
        extra_params={
            "dataset.num_images": card["num_images"],
            "init": str(init) if init is not None else "none",
        },
        datasets={"train": dataset},
    )
