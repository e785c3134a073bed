"""`avatar-platform train gan`: train the tri-plane GAN on a generated dataset (Ray Train)."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.cli.common import PRESET_HELP, echo_err

app = typer.Typer(help="Train the models (Ray Train, tracked in MLflow).", no_args_is_help=True)


@app.command()
def gan(
    data: Path = typer.Option(..., help="a dataset folder written by `avatar-platform generate`"),
    preset: str = typer.Option("demo", help=PRESET_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML overriding the preset ('gan')"),
    steps: int | None = typer.Option(None, help="training steps"),
    kimg: float | None = typer.Option(None, help="train on this many thousand images instead"),
    batch_size: int | None = typer.Option(None, help="images per step over all workers"),
    workers: int | None = typer.Option(None, help="Ray Train workers (one GPU each on GPUs)"),
    discriminator: str | None = typer.Option(
        None, help="D condition: coarse-to-fine | fine | coarse | camera | none"
    ),
    out: Path | None = typer.Option(
        None, help="output folder (default: $AVATAR_HOME/runs/gan-<time>)"
    ),
    resume: bool = typer.Option(False, help="continue the stopped run in --out"),
    ray_address: str | None = typer.Option(None, help="join this Ray cluster (or RAY_ADDRESS)"),
    track: bool = typer.Option(True, help="record the run in MLflow"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and exit"),
) -> None:
    """Train the EG3D tri-plane GAN with the coarse-to-fine pose discriminator."""
    import json
    import math
    import time

    from avatar_platform.core.config import resolve_config
    from avatar_platform.core.errors import AvatarPlatformError
    from avatar_platform.core.paths import platform_home
    from avatar_platform.pipelines.training.gan_config import GanTrainingConfig

    overrides: dict = {"steps": steps, "batch_size": batch_size, "workers": workers,
                       "discriminator": {"conditioning": {"mode": discriminator}}}  # fmt: skip
    cfg = resolve_config(GanTrainingConfig, "gan", preset, config, overrides)
    if kimg is not None:
        if kimg <= 0:
            raise AvatarPlatformError(f"--kimg must be positive, got {kimg}")
        cfg = cfg.model_copy(update={"steps": max(math.ceil(kimg * 1000 / cfg.batch_size), 1)})
    if out is None:
        out = platform_home() / "runs" / time.strftime("gan-%Y%m%d-%H%M%S")
    if dry_run:
        typer.echo(json.dumps({"out": str(out), "gan": cfg.model_dump(mode="json")}, indent=2))
        return

    from avatar_platform.pipelines.training.gan_job import run_train_gan

    echo_err(f"training the GAN for {cfg.steps} steps (batch {cfg.batch_size}, "
             f"{cfg.workers} worker(s)) on {data} → {out}")  # fmt: skip
    summary = run_train_gan(cfg, data, out, resume=resume, ray_address=ray_address, track=track)
    echo_err(f"done: step {summary.steps} in {summary.seconds:.0f} s")
    typer.echo(f"model    {summary.model}")
    if summary.run_id:
        typer.echo(f"mlflow   run {summary.run_id} (experiment 'train-gan')")
    typer.echo(f"next     avatar-platform sample --model {summary.out} --seeds 0-3 --mesh")
