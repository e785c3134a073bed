"""`avatar-platform train gan | diffusion | lora`: the tri-plane GAN on a generated dataset, the
style-space diffusion on a trained generator, and a character LoRA from a few pictures (Ray
Train, MLflow)."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.cli.common import (
    DRY_RUN,
    GPU_WAIT,
    GPUS,
    PRESET_HELP,
    RAY_ADDRESS,
    RESUME,
    TRACK,
    WORKERS,
    echo_err,
)

app = typer.Typer(help="Train the models (Ray Train, tracked in MLflow).", no_args_is_help=True)


def _resolve(model, section: str, preset: str, config: Path | None, common: dict, **overrides):
    """The job's config: the preset, then --config, then the flags given (None = not given).

    `common` holds the flags every `train` command takes (steps, batch_size, workers, gpus,
    gpu_wait_s), `overrides` the command's own."""
    from avatar_platform.core.config import resolve_config

    return resolve_config(model, section, preset, config, {**common, **overrides})


def _out_folder(out: Path | None, kind: str) -> Path:
    """--out as the user meant it from this folder, or $AVATAR_HOME/runs/<kind>-<time>."""
    import time

    from avatar_platform.core.paths import platform_home, user_path

    return user_path(out or platform_home() / "runs" / time.strftime(f"{kind}-%Y%m%d-%H%M%S"))


def _print_dry_run(out: Path, section: str, cfg, **extra) -> None:
    import json

    typer.echo(json.dumps({"out": str(out), **extra, section: cfg.model_dump(mode="json")}, indent=2))


def _print_end(summary, experiment: str, next_command: str) -> None:
    """The lines every training ends with: its MLflow run, and what to run next."""
    if summary.run_id:
        typer.echo(f"mlflow   run {summary.run_id} (experiment '{experiment}')")
    typer.echo(f"next     {next_command}")


@app.command()
def gan(
    data: Path = typer.Option(..., help="a dataset folder written by `avatar-platform generate`"),
    preset: str = typer.Option("demo", help=PRESET_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML overriding the preset ('gan')"),
    steps: int | None = typer.Option(None, help="training steps"),
    kimg: float | None = typer.Option(None, help="train on this many thousand images instead"),
    batch_size: int | None = typer.Option(None, help="images per step over all workers"),
    workers: int | None = WORKERS,
    discriminator: str | None = typer.Option(
        None, help="D condition: coarse-to-fine | fine | coarse | camera | none"
    ),
    out: Path | None = typer.Option(None, help="output folder (default: $AVATAR_HOME/runs/gan-<time>)"),
    resume: bool = RESUME,
    init: str | None = typer.Option(
        None,
        "--init",
        help="start from this GAN's weights (folder, runs:/…, models:/… or the shipped "
        "starter:demo) with a fresh optimiser and schedule: fine-tuning",
    ),
    ray_address: str | None = RAY_ADDRESS,
    gpus: str | None = GPUS,
    gpu_wait: float | None = GPU_WAIT,
    track: bool = TRACK,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train the EG3D tri-plane GAN with the coarse-to-fine pose discriminator."""
    import math

    from avatar_platform.core.errors import AvatarPlatformError
    from avatar_platform.core.paths import user_model_spec, user_path
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    common = dict(steps=steps, batch_size=batch_size, workers=workers, gpus=gpus, gpu_wait_s=gpu_wait)
    conditioning = {"conditioning": {"mode": discriminator}}
    cfg = _resolve(GanTrainingConfig, "gan", preset, config, common, discriminator=conditioning)
    if kimg is not None:
        if kimg <= 0:
            raise AvatarPlatformError(f"--kimg must be positive, got {kimg}")
        cfg = cfg.model_copy(update={"steps": max(math.ceil(kimg * 1000 / cfg.batch_size), 1)})
    # every path as the user meant it, from this folder: the workers run in other folders
    data = user_path(data)
    out = _out_folder(out, "gan")
    init = user_model_spec(init) if init is not None else None
    if dry_run:
        _print_dry_run(out, "gan", cfg, init=init)
        return

    from avatar_platform.formats.model_folder import BEST_FOLDER, read_metrics
    from avatar_platform.pipelines.training.gan.job import run_train_gan

    echo_err(
        f"training the GAN for {cfg.steps} steps (batch {cfg.batch_size}, {cfg.workers} worker(s)) on {data} → {out}"
    )
    if init is not None:
        echo_err(f"starting from the weights of {init} (fresh optimiser and schedule)")
    summary = run_train_gan(cfg, data, out, resume=resume, ray_address=ray_address, track=track, init=init)
    echo_err(f"done: step {summary.steps} in {summary.seconds:.0f} s")
    typer.echo(f"model    {summary.model}")
    best = summary.out / BEST_FOLDER
    if cfg.keep_best and best.is_dir():
        scores = read_metrics(best)
        typer.echo(
            f"best     {best} (step {scores.get('step', '?')}, training FID {scores.get('fid', float('nan')):.2f})"
        )
    _print_end(summary, "train-gan", f"avatar-platform sample --model {summary.out} --seeds 0-3 --mesh")


@app.command()
def diffusion(
    generator: str = typer.Option(
        ...,
        help="the trained generator: a `train gan` output or model folder, an MLflow URI, or the shipped starter:demo",
    ),
    preset: str = typer.Option("demo", help=PRESET_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML overriding the preset ('diffusion')"),
    steps: int | None = typer.Option(None, help="training steps"),
    batch_size: int | None = typer.Option(None, help="pairs per step over all workers"),
    workers: int | None = WORKERS,
    encoder: str | None = typer.Option(None, help="image encoder: cnn (built in) | clip"),
    clip_model: str | None = typer.Option(None, help="CLIP hub id or local folder (--encoder clip)"),
    out: Path | None = typer.Option(None, help="output folder (default: $AVATAR_HOME/runs/diffusion-<time>)"),
    resume: bool = RESUME,
    ray_address: str | None = RAY_ADDRESS,
    gpus: str | None = GPUS,
    gpu_wait: float | None = GPU_WAIT,
    track: bool = TRACK,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train the style-space diffusion: a frontal image → the generator's w (METHOD §4)."""
    from avatar_platform.core.paths import user_model_spec
    from avatar_platform.pipelines.training.diffusion.config import DiffusionTrainingConfig

    common = dict(steps=steps, batch_size=batch_size, workers=workers, gpus=gpus, gpu_wait_s=gpu_wait)
    encoder_flags = {"kind": encoder, "clip_model": clip_model}
    cfg = _resolve(DiffusionTrainingConfig, "diffusion", preset, config, common, encoder=encoder_flags)
    generator = user_model_spec(generator)  # a folder from here, or an MLflow URI as given
    out = _out_folder(out, "diffusion")
    if dry_run:
        _print_dry_run(out, "diffusion", cfg)
        return

    from avatar_platform.pipelines.training.diffusion.job import EXPERIMENT, run_train_diffusion

    echo_err(
        f"training the style diffusion ({cfg.encoder.kind} encoder) for {cfg.steps} steps "
        f"(batch {cfg.batch_size}, {cfg.workers} worker(s)) on {generator} → {out}"
    )
    summary = run_train_diffusion(cfg, generator, out, resume=resume, ray_address=ray_address, track=track)
    echo_err(f"done: step {summary.steps} in {summary.seconds:.0f} s")
    typer.echo(f"model    {summary.model}")
    if (summary.model / "eval.png").is_file():
        typer.echo(f"eval     {summary.model / 'eval.png'} (held-out inputs | avatar views)")
    for key in ("eval/w_error", "eval/image_l1"):
        if key in summary.metrics:
            baseline = summary.metrics.get(f"{key}_mean_baseline")
            typer.echo(f"{key:<14} {summary.metrics[key]:.4f} (mean-w baseline {baseline:.4f})")
    _print_end(summary, EXPERIMENT, f"avatar-platform sample --model {summary.out} --image FACE.png")


@app.command()
def lora(
    images: Path = typer.Option(..., help="a folder of 3+ JPEG/PNG/WebP pictures of the character"),
    token: str = typer.Option(..., help="the character's name in captions and prompts, e.g. 'zorb'"),
    base: str | None = typer.Option(None, help="Stable Diffusion 1.5: hub id or local folder"),
    preset: str = typer.Option("demo", help=PRESET_HELP),
    config: Path | None = typer.Option(None, "--config", help="YAML overriding the preset ('lora')"),
    rank: int | None = typer.Option(None, help="LoRA rank"),
    steps: int | None = typer.Option(None, help="training steps"),
    resolution: int | None = typer.Option(None, help="training image side (multiple of 8)"),
    batch_size: int | None = typer.Option(None, help="pictures per step over all workers"),
    lr: float | None = typer.Option(None, help="learning rate"),
    train_text_encoder: bool | None = typer.Option(
        None, help="also adapt the text encoder (default: UNet only)"
    ),
    workers: int | None = WORKERS,
    out: Path | None = typer.Option(None, help="output folder (default: $AVATAR_HOME/runs/lora-<time>)"),
    resume: bool = RESUME,
    ray_address: str | None = RAY_ADDRESS,
    gpus: str | None = GPUS,
    gpu_wait: float | None = GPU_WAIT,
    track: bool = TRACK,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train a character LoRA on Stable Diffusion's UNet from a few pictures (METHOD §1)."""
    from avatar_platform.core.paths import user_path
    from avatar_platform.pipelines.training.lora.config import LoraTrainingConfig

    common = dict(steps=steps, batch_size=batch_size, workers=workers, gpus=gpus, gpu_wait_s=gpu_wait)
    adapter = {"token": token, "base": base, "rank": rank, "resolution": resolution, "lr": lr}
    cfg = _resolve(
        LoraTrainingConfig, "lora", preset, config, common, **adapter, train_text_encoder=train_text_encoder
    )
    images = user_path(images)
    out = _out_folder(out, "lora")
    if dry_run:
        _print_dry_run(out, "lora", cfg)
        return

    from avatar_platform.formats.lora_folder import LORA_WEIGHTS
    from avatar_platform.pipelines.training.lora.job import EXPERIMENT, run_train_lora

    echo_err(
        f"training a rank-{cfg.rank} LoRA of '{cfg.token}' on {cfg.base} for {cfg.steps} "
        f"steps (batch {cfg.batch_size}, {cfg.resolution}², {cfg.workers} worker(s)) "
        f"on {images} → {out}"
    )
    summary = run_train_lora(cfg, images, out, resume=resume, ray_address=ray_address, track=track)
    echo_err(f"done: step {summary.steps} in {summary.seconds:.0f} s")
    weights = summary.model / LORA_WEIGHTS
    typer.echo(f"adapter  {weights} ({weights.stat().st_size:,} bytes)")
    if (summary.model / "samples.png").is_file():
        typer.echo(f"samples  {summary.model / 'samples.png'} (fixed seeds)")
    _print_end(
        summary,
        EXPERIMENT,
        f"avatar-platform generate --backend controlnet --sd-model {cfg.base} --lora {summary.model} "
        "--guidance hybrid",
    )
