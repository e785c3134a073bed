"""The Ray Train worker loop of the style diffusion: DiffusionTrainer steps → reports and
checkpoints; rank 0 evaluates held-out pairs and logs a comparison grid to MLflow."""

from __future__ import annotations

from functools import partial

from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig
from avatar_platform.pipelines.training.diffusion.trainer import DiffusionTrainer
from avatar_platform.pipelines.training.ray_job import due, report_checkpoint, start_worker, training_steps


def train_diffusion_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    build = partial(DiffusionTrainer, generator_folder=loop_config["generator"])
    config, rank, logger, trainer = start_worker(loop_config, DiffusionTrainingConfig, build)
    held_out = trainer.held_out() if rank == 0 and config.eval_pairs else None
    evaluation: dict[str, float] = {}
    grid = None  # input | avatar front, left, back, right, for held-out inputs
    for step, metrics, last in training_steps(
        trainer, config.steps, config.log_every, loop_config, rank, logger
    ):
        if held_out is not None and due(step, config.eval_every, last):
            evaluation = trainer.evaluate(*held_out)
            grid = trainer.comparison_grid(*held_out)
            logger.metrics(evaluation, step)
            logger.image(grid, f"eval/step-{step:07d}.png")
        if due(step, config.checkpoint_every, last):
            save = partial(trainer.save, metrics=dict(evaluation), grid=grid)
            report_checkpoint(step, {**metrics, **evaluation}, save, rank)
