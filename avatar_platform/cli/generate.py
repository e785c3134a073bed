"""`avatar-platform generate`: a multi-view avatar dataset on Ray Data; `avatar-platform styles`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from avatar_platform.cli.common import GPU_WAIT, GPUS, PRESET_HELP, echo_err, parse_choice_list

BACKEND_PANEL = "controlnet backend"


def _backend_option(help: str):
    """An option of the controlnet backend (unset: the preset's value), in its own help panel."""
    return typer.Option(None, help=help, rich_help_panel=BACKEND_PANEL)


def generate(
    preset: str = typer.Option("demo", help=PRESET_HELP),
    config: Path | None = typer.Option(
        None, "--config", help="YAML file overriding the preset (section 'generate')"
    ),
    backend: str | None = typer.Option(None, help="procedural (offline, default) or controlnet"),
    num_images: int | None = typer.Option(None, help="images in the dataset"),
    styles: str | None = typer.Option(
        None, help="comma-separated style names (see `avatar-platform styles`) or 'all'"
    ),
    views_per_avatar: int | None = typer.Option(None, help="cameras per avatar template"),
    resolution: int | None = typer.Option(None, help="image side in pixels (multiple of 8)"),
    seed: int | None = typer.Option(None, help="seed of the whole plan"),
    workers: int | None = typer.Option(None, help="image-generation actors (GPUs on a cluster)"),
    out: Path | None = typer.Option(
        None, help="output folder (default: $AVATAR_HOME/datasets/<preset>-<backend>-<hash>)"
    ),
    ray_address: str | None = typer.Option(
        None, help="join this Ray cluster (or set RAY_ADDRESS); default: local Ray"
    ),
    pose_noise: float | None = typer.Option(
        None, help="procedural: share of side/back images rendered at a perturbed yaw"
    ),
    gpus: str | None = GPUS,
    gpu_wait: float | None = GPU_WAIT,
    pose_noise_mode: str | None = typer.Option(
        None,
        help="procedural: jitter (up to pose_noise_degrees off) or flip (rendered from the "
        "front-back mirrored yaw: a face where the back should be)",
    ),
    template_mesh: Path | None = typer.Option(
        None, help="a GLB/OBJ/PLY bust used for every avatar (with <mesh>.landmarks.json)"
    ),
    template_landmarks: Path | None = typer.Option(None, help="landmarks JSON of --template-mesh"),
    template_normalize: bool | None = typer.Option(
        None,
        "--template-normalize/--no-template-normalize",
        help="centre and scale --template-mesh from its landmarks (ears or eyes) to the built-in "
        "busts' size, head centre at the origin (for a mesh in other units)",
    ),
    sd_model: str | None = _backend_option("Stable Diffusion 1.5: hub id or folder"),
    openpose_controlnet: str | None = _backend_option("OpenPose ControlNet: hub id or folder"),
    depth_controlnet: str | None = _backend_option("depth ControlNet: hub id or folder"),
    guidance: str | None = _backend_option("openpose | depth | hybrid (both)"),
    steps: int | None = _backend_option("denoising steps"),
    guidance_scale: float | None = _backend_option("classifier-free guidance scale"),
    scheduler: str | None = _backend_option("unipc | dpm-solver++ | ddim"),
    batch_size: int | None = _backend_option("prompts per pipeline call"),
    lora: str | None = _backend_option(
        "a character LoRA (`train lora` output's model folder, or diffusers weights); "
        "its token replaces the style text"
    ),
    lora_scale: float | None = _backend_option("strength of the LoRA (default 1)"),
    matting_model: str | None = _backend_option(
        "image-segmentation model (hub id or folder; transformers semantic segmentation) "
        "that refines each image's mask within the dilated condition silhouette"
    ),
    preview: bool = typer.Option(True, help="write preview.png (styles × views) when done"),
    track: bool = typer.Option(True, help="record the run in MLflow"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and exit"),
) -> None:
    """Generate a multi-view avatar dataset (Parquet + dataset.json) on Ray Data."""
    from avatar_platform.core.config import resolve_config
    from avatar_platform.core.paths import platform_home, user_path, user_source
    from avatar_platform.formats.lora_folder import lora_folder
    from avatar_platform.pipelines.datagen.config import GenerateConfig
    from avatar_platform.pipelines.datagen.job import check_inputs, config_hash

    overrides = {
        "backend": backend,
        "num_images": num_images,
        "styles": parse_choice_list(styles),
        "views_per_avatar": views_per_avatar,
        "resolution": resolution,
        "seed": seed,
        "workers": workers,
        "gpus": gpus,
        "gpu_wait_s": gpu_wait,
        # absolute: Ray's tasks, which read them, run in other working folders
        "template_mesh": str(user_path(template_mesh)) if template_mesh else None,
        "template_landmarks": str(user_path(template_landmarks)) if template_landmarks else None,
        "template_normalize": template_normalize,
        "procedural": {"pose_noise": pose_noise, "pose_noise_mode": pose_noise_mode},
        "controlnet": {
            "sd_model": user_source(sd_model),
            "openpose_controlnet": user_source(openpose_controlnet),
            "depth_controlnet": user_source(depth_controlnet),
            "guidance": guidance,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "scheduler": scheduler,
            "batch_size": batch_size,
            "lora": user_source(lora_folder(lora)) if lora else None,
            "lora_scale": lora_scale,
            "matting_model": user_source(matting_model),
        },
    }
    cfg = resolve_config(GenerateConfig, "generate", preset, config, overrides)
    check_inputs(cfg)
    if cfg.template_mesh and cfg.template_normalize:
        from avatar_platform.pipelines.poses.template import describe_normalization, template_for

        template = template_for(0, cfg.template_mesh, cfg.template_landmarks, normalize=True)
        echo_err(describe_normalization(template))
    if out is None:
        out = platform_home() / "datasets" / f"{preset}-{cfg.backend}-{config_hash(cfg)[:8]}"
    out = user_path(out)
    if dry_run:
        typer.echo(json.dumps({"out": str(out), "generate": cfg.model_dump(mode="json")}, indent=2))
        return

    from avatar_platform.pipelines.datagen.job import EXPERIMENT, run_generate

    summary = run_generate(cfg, out, ray_address, track=track, preview=preview, announce=echo_err)
    if summary.generated_now == 0:
        echo_err(f"already complete: {summary.images} images in {summary.out}")
    else:
        resumed = f", {summary.resumed_from} kept from an earlier run" if summary.resumed_from else ""
        echo_err(
            f"done: {summary.generated_now} images in {summary.seconds:.1f} s "
            f"({summary.images_per_second:.2f} images/s){resumed}"
        )
    typer.echo(f"dataset  {summary.out}")
    typer.echo(f"card     {summary.out / 'dataset.json'}")
    if summary.preview:
        typer.echo(f"preview  {summary.preview}")
    if summary.run_id:
        typer.echo(f"mlflow   run {summary.run_id} (experiment '{EXPERIMENT}')")
    typer.echo(f"next     avatar-platform dataset info {summary.out}")


def styles() -> None:
    """List the style catalog (names for --styles)."""
    from avatar_platform.pipelines.prompts.prompts import style_catalog

    for style in style_catalog().values():
        typer.echo(f"{style.name:16s} {style.prompt}")
