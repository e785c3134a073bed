"""The Ray Train worker loop of a character LoRA: LoraTrainer steps → reports and checkpoints;
rank 0 logs the loss and the sample images at fixed seeds to MLflow."""

from __future__ import annotations

from functools import partial

from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig
from avatar_platform.pipelines.training.lora.data import load_training_images
from avatar_platform.pipelines.training.lora.trainer import LoraTrainer
from avatar_platform.pipelines.training.ray_job import due, report_checkpoint, start_worker, training_steps


def train_lora_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""

    def build(config: LoraTrainingConfig, **placement) -> LoraTrainer:  # each worker reads the pictures
        images = load_training_images(loop_config["images"], config.token, config.resolution)
        return LoraTrainer(config, images, **placement)

    config, rank, logger, trainer = start_worker(loop_config, LoraTrainingConfig, build)
    grid = None  # the fixed-seed samples, kept in every checkpoint after they are made
    for step, metrics, last in training_steps(
        trainer, config.steps, config.log_every, loop_config, rank, logger
    ):
        if rank == 0 and due(step, config.sample_every, last):
            grid = trainer.sample_grid()
            logger.image(grid, f"samples/step-{step:07d}.png")
        if due(step, config.checkpoint_every, last):
            report_checkpoint(step, metrics, partial(trainer.save, grid=grid), rank)
