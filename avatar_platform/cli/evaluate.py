"""`avatar-platform eval MODEL --data DATASET`: a trained GAN's numbers and a page to look at."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.core.errors import AvatarPlatformError

MAX_SAMPLES = 50_000


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
