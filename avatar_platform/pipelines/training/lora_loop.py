"""The Ray Train worker loop of a character LoRA: LoraTrainer steps → reports and checkpoints;
rank 0 logs the loss and the sample images at fixed seeds to MLflow."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from avatar_platform.pipelines.training.lora_config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora_data import load_training_images
from avatar_platform.pipelines.training.lora_trainer import LoraTrainer
from avatar_platform.pipelines.training.ray_job import (
    RunLogger,
    report_checkpoint,
    write_progress,
)


def train_lora_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    config = LoraTrainingConfig.model_validate(loop_config["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if not torch.cuda.is_available():
        torch.set_num_threads(max(loop_config.get("cpu_threads", 1), 1))
    images = load_training_images(loop_config["images"], config.token, config.resolution)
    trainer = LoraTrainer(config, images, ray.train.torch.get_device(), rank, world)
    logger = RunLogger(loop_config.get("tracking_uri"), loop_config.get("run_id"), rank == 0)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder))
        logger.metrics({"resumed_from_step": trainer.step}, trainer.step)
    grid = None  # the fixed-seed samples, kept in every checkpoint after they are made
    while trainer.step < config.steps:
        metrics = trainer.train_step()
        step = trainer.step
        last = step == config.steps
        if rank == 0 and loop_config.get("progress_file"):
            write_progress(Path(loop_config["progress_file"]), step, metrics)
        if step % config.log_every == 0 or last:
            logger.metrics(metrics, step)
        if rank == 0 and (last or (config.sample_every and step % config.sample_every == 0)):
            grid = trainer.sample_grid()
            logger.image(grid, f"samples/step-{step:07d}.png")
        if step % config.checkpoint_every == 0 or last:
            report_checkpoint(step, metrics, partial(trainer.save, grid=grid), rank)
