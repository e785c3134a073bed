"""The Ray Train worker loop of the style diffusion: DiffusionTrainer steps → reports and
checkpoints; rank 0 evaluates held-out pairs and logs a comparison grid to MLflow."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from avatar_platform.pipelines.training.diffusion_config import DiffusionTrainingConfig
from avatar_platform.pipelines.training.diffusion_trainer import DiffusionTrainer
from avatar_platform.pipelines.training.ray_job import (
    RunLogger,
    report_checkpoint,
    write_progress,
)


def train_diffusion_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    config = DiffusionTrainingConfig.model_validate(loop_config["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if not torch.cuda.is_available():
        torch.set_num_threads(max(loop_config.get("cpu_threads", 1), 1))
    trainer = DiffusionTrainer(config, loop_config["generator"], ray.train.torch.get_device(),
                               rank, world)  # fmt: skip
    logger = RunLogger(loop_config.get("tracking_uri"), loop_config.get("run_id"), rank == 0)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder))
        logger.metrics({"resumed_from_step": trainer.step}, trainer.step)
    held_out = trainer.held_out() if rank == 0 and config.eval_pairs else None
    evaluation: dict[str, float] = {}
    grid = None  # input | avatar front, left, back, right, for held-out inputs
    while trainer.step < config.steps:
        metrics = trainer.train_step()
        step = trainer.step
        last = step == config.steps
        if rank == 0 and loop_config.get("progress_file"):
            write_progress(Path(loop_config["progress_file"]), step, metrics)
        if step % config.log_every == 0 or last:
            logger.metrics(metrics, step)
        if held_out is not None and (last or (config.eval_every and step % config.eval_every == 0)):
            evaluation = trainer.evaluate(*held_out)
            grid = trainer.comparison_grid(*held_out)
            logger.metrics(evaluation, step)
            logger.image(grid, f"eval/step-{step:07d}.png")
        if step % config.checkpoint_every == 0 or last:
            save = partial(trainer.save, metrics=dict(evaluation), grid=grid)
            report_checkpoint(step, {**metrics, **evaluation}, save, rank)
