"""The Ray Train worker loop of a character LoRA: LoraTrainer steps → reports and checkpoints;
rank 0 logs the loss and the sample images at fixed seeds to MLflow."""

from __future__ import annotations

from functools import partial

from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import load_training_images
from avatar_platform.pipelines.training.lora.trainer import LoraTrainer
from avatar_platform.pipelines.training.ray_job import (
    due,
    report_checkpoint,
    resume_from_checkpoint,
    training_steps,
    worker_setup,
)


def train_lora_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train.torch

    config = LoraTrainingConfig.model_validate(loop_config["config"])
    rank, world, logger = worker_setup(loop_config)
    images = load_training_images(loop_config["images"], config.token, config.resolution)
    trainer = LoraTrainer(config, images, ray.train.torch.get_device(), rank, world)
    resume_from_checkpoint(trainer, logger)
    grid = None  # the fixed-seed samples, kept in every checkpoint after they are made
    for step, metrics, last in training_steps(
        trainer, config.steps, config.log_every, loop_config, rank, logger
    ):
        if rank == 0 and due(step, config.sample_every, last):
            grid = trainer.sample_grid()
            logger.image(grid, f"samples/step-{step:07d}.png")
        if due(step, config.checkpoint_every, last):
            report_checkpoint(step, metrics, partial(trainer.save, grid=grid), rank)
