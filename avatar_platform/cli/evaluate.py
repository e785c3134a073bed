"""`avatar-platform eval MODEL --data DATASET`: a trained GAN's numbers and a page to look at;
`avatar-platform eval ablation`: the discriminator ablation, trained and scored arm by arm."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup

from avatar_platform.cli.common import DRY_RUN, PRESET_HELP, RAY_ADDRESS, TRACK, echo_err, parse_choice_list
from avatar_platform.core.errors import AvatarPlatformError

MAX_SAMPLES = 50_000


class _ModelByDefault(TyperGroup):
    """`eval MODEL …` is `eval model MODEL …`: the group's first word is a subcommand only
    when it names one (a model folder called `ablation` is passed as ./ablation)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ModelByDefault,
    help="Evaluate a model (`eval MODEL --data DATASET`) or run the discriminator ablation (`eval ablation`).",
    no_args_is_help=True,
)


@app.command(name="model")
def evaluate(
    model: str = typer.Argument(
        ..., help="a GAN or diffusion model: folder, `train` output, MLflow URI or starter:demo"
    ),
    data: Path = typer.Option(..., help="the dataset to compare with (a `generate` output)"),
    num_samples: int = typer.Option(128, help="renders and dataset pictures for FID/KID"),
    out: Path | None = typer.Option(None, help="output folder (default: $AVATAR_HOME/eval/eval-<time>)"),
    view_classifier: Path | None = typer.Option(
        None, help="a view classifier folder for view accuracy (default: the one shipped, if any)"
    ),
) -> None:
    """FID/KID at the dataset's cameras; on procedural data also the geometry error against the
    true busts and the silhouette IoU. Writes metrics.json and report.png."""
    import time

    from avatar_platform.core.paths import platform_home, user_model_spec, user_path

    if not 2 <= num_samples <= MAX_SAMPLES:
        raise AvatarPlatformError(f"--num-samples {num_samples}", expected=f"2 to {MAX_SAMPLES}")
    spec = user_model_spec(model)
    data = user_path(data)
    out = user_path(out or platform_home() / "eval" / time.strftime("eval-%Y%m%d-%H%M%S"))

    from avatar_platform.pipelines.evaluation.report import run_eval

    metrics = run_eval(
        spec, data, out, num_samples, user_path(view_classifier) if view_classifier else "shipped"
    )
    for key, value in metrics.items():
        if key == "absent":
            for name, why in value.items():
                typer.echo(f"{name:<15} absent: {why}")
        elif isinstance(value, float):
            typer.echo(f"{key:<15} {value:.4g}")
        elif key in ("features", "samples", "border_faces", "step"):
            typer.echo(f"{key:<15} {value}")
    typer.echo(f"metrics  {out / 'metrics.json'}")
    typer.echo(f"report   {out / 'report.png'}")


def _numbers(value: str | None, option: str, kind: type, example: str) -> list | None:
    """'0, 0.5' → [0.0, 0.5] (of `kind`); None stays None; anything else is one clear error."""
    parts = parse_choice_list(value)
    if parts is None:
        return None
    try:
        return [kind(part) for part in parts]
    except ValueError:
        what = "numbers" if kind is float else "integers"
        raise AvatarPlatformError(
            f"{option} '{value}' is not a list of {what}", expected=f"e.g. {example}"
        ) from None


@app.command()
def ablation(
    preset: str = typer.Option("demo", help=PRESET_HELP + " (its `ablation` section gives the scale)"),
    config: Path | None = typer.Option(
        None, "--config", help="YAML overriding the preset ('ablation', 'generate', 'gan')"
    ),
    noise_levels: str | None = typer.Option(None, help="pose_noise of the datasets, e.g. 0,0.5"),
    noise_mode: str | None = typer.Option(None, help="jitter | flip (how a noisy view is wrong)"),
    modes: str | None = typer.Option(None, help="D conditions, e.g. coarse-to-fine,fine,coarse,camera"),
    seeds: str | None = typer.Option(None, help="dataset and training seeds, e.g. 0,1"),
    steps: int | None = typer.Option(None, help="training steps per arm"),
    num_images: int | None = typer.Option(None, help="pictures per dataset"),
    num_samples: int | None = typer.Option(None, help="renders and pictures for FID/KID per arm"),
    out: Path | None = typer.Option(None, help="output folder (default: $AVATAR_HOME/ablation/<preset>)"),
    ray_address: str | None = RAY_ADDRESS,
    track: bool = TRACK,
    dry_run: bool = DRY_RUN,
) -> None:
    """Noise levels × discriminator conditions × seeds: a procedural dataset per (noise, seed), a
    GAN per arm trained for the same steps, each scored against the true busts. Re-running the
    same command continues; a finished arm is never re-run. Writes results.md/json and ablation.png."""
    import json

    from avatar_platform.core.config import resolve_config
    from avatar_platform.core.paths import platform_home, user_path
    from avatar_platform.pipelines.evaluation.ablation import Ablation, AblationConfig, arms_of

    overrides = {
        "noise_levels": _numbers(noise_levels, "--noise-levels", float, "0,0.5"),
        "noise_mode": noise_mode,
        "modes": parse_choice_list(modes),
        "seeds": _numbers(seeds, "--seeds", int, "0,1"),
        "steps": steps,
        "num_images": num_images,
        "num_samples": num_samples,
    }
    cfg = resolve_config(AblationConfig, "ablation", preset, config, overrides)
    out = user_path(out or platform_home() / "ablation" / preset)
    config_file = user_path(config) if config else None
    arms = arms_of(cfg)
    total = len(arms)
    index = {arm.name: i + 1 for i, arm in enumerate(arms)}

    def hook(arm, stage: str) -> None:
        if stage == "generate":
            echo_err(f"dataset {arm.data_name} (pose noise {arm.noise:g}, seed {arm.seed}): generate")
        else:
            echo_err(f"[{index[arm.name]}/{total}] {arm.name}: {stage}")

    job = Ablation(cfg, out, preset, config_file, ray_address=ray_address, track=track, hook=hook)
    if dry_run:  # (run() checks the same before it starts)
        job.check()
        typer.echo(
            json.dumps(
                {"out": str(out), "ablation": cfg.model_dump(mode="json"), "arms": [a.name for a in arms]},
                indent=2,
            )
        )
        return
    echo_err(
        f"ablation: {total} arms ({len(cfg.noise_levels)} noise × {len(cfg.modes)} D conditions × {len(cfg.seeds)} seeds) → {out}"
    )
    summary = job.run()
    if summary.finished:
        echo_err(f"{len(summary.finished)} arm(s) were already done and kept")
    typer.echo((out / "results.md").read_text())
    typer.echo(f"table    {out / 'results.md'}")
    typer.echo(f"plot     {out / 'ablation.png'}")
