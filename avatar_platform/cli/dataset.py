"""`avatar-platform dataset info|preview DIR`: look at a generated dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.core.errors import AvatarPlatformError

app = typer.Typer(help="Inspect a generated dataset.", no_args_is_help=True)


@app.command()
def info(
    folder: Path = typer.Argument(..., help="a dataset folder (holding dataset.json)"),
    verify: bool = typer.Option(False, help="re-hash every shard against the card"),
    json_out: bool = typer.Option(False, "--json", help="print the whole card as JSON"),
) -> None:
    """Print the dataset card: images, backend, counts per style and view bin."""
    import json

    from avatar_platform.formats.dataset_card import format_card, read_card, verify_shards

    card = read_card(folder)
    typer.echo(json.dumps(card, indent=2) if json_out else format_card(folder, card))
    if verify:
        bad = verify_shards(folder, card)
        if bad:
            raise AvatarPlatformError(
                f"{len(bad)} shard(s) do not match the card's hash: {', '.join(bad[:3])}",
                fix="regenerate the dataset into a new folder",
            )
        typer.echo(f"verified     {len(card['shards'])} shards match their sha256")


@app.command()
def preview(
    folder: Path = typer.Argument(..., help="a dataset folder (holding dataset.json)"),
    out: Path | None = typer.Option(None, help="PNG to write (default: <dataset>/preview.png)"),
    max_styles: int = typer.Option(12, min=1, help="rows (styles) in the sheet"),
) -> None:
    """Write a contact sheet PNG: one row per style, one column per view bin."""
    from avatar_platform.formats.dataset_card import write_preview

    typer.echo(str(write_preview(folder, out, max_styles)))


@app.command()
def export(
    folder: Path = typer.Argument(..., help="a dataset folder (holding dataset.json)"),
    out: Path = typer.Option(..., help="folder to write the PNGs into"),
    yaw: float = typer.Option(0.0, min=-180.0, max=180.0, help="the view: 0 = front, 180 = back"),
    count: int = typer.Option(4, min=1, max=1000, help="images (each of another avatar)"),
    style: str | None = typer.Option(None, help="only this style"),
) -> None:
    """Write images seen nearest a yaw as PNGs (e.g. frontal pictures for `sample --image`)."""
    from avatar_platform.formats.dataset_card import export_images

    for path in export_images(folder, out, yaw, count, style):
        typer.echo(str(path))


@app.command(name="train-view-classifier")
def train_view_classifier(
    folder: Path = typer.Argument(..., help="a procedural dataset (its true views are the labels)"),
    out: Path = typer.Option(..., help="the classifier's model folder"),
    steps: int = typer.Option(600, min=1, max=100_000, help="training steps"),
    batch_size: int = typer.Option(64, min=2, max=4096, help="pictures per step"),
    seed: int = typer.Option(0, min=0, help="training seed (held-out avatars, batches)"),
) -> None:
    """Train the view classifier (view bin + yaw) that `dataset audit` and `eval` use."""
    import shlex
    import sys

    from avatar_platform.core.paths import user_path
    from avatar_platform.core.progress import progress_bar
    from avatar_platform.pipelines.evaluation import view_classifier

    folder, out = user_path(folder), user_path(out)
    with progress_bar("training", steps) as bar:
        model, scores = view_classifier.train(
            folder, steps, batch_size, seed=seed, progress=lambda step: bar.advance(1)
        )
    command = "avatar-platform dataset train-view-classifier " + shlex.join(sys.argv[3:] or [str(folder)])
    view_classifier.save(model, scores, out, command)
    typer.echo(f"held-out   {scores['held_out_pictures']} pictures of unseen avatars")
    typer.echo(f"accuracy   {scores['bin_accuracy']:.3f} (view bin)")
    typer.echo(f"yaw error  {scores['yaw_error_deg']:.1f}° (mean)")
    typer.echo(f"classifier {out}")


@app.command()
def audit(
    folder: Path = typer.Argument(..., help="a dataset folder (procedural or controlnet)"),
    classifier: Path | None = typer.Option(
        None, help="a view classifier folder (default: the one shipped with avatar-platform)"
    ),
    out: Path | None = typer.Option(
        None, help="folder for audit.json and offenders.png (default: <dataset>/audit)"
    ),
    worst: int = typer.Option(24, min=1, max=500, help="offenders in the contact sheet"),
) -> None:
    """Pictures whose content disagrees with their camera label: a count per view bin, and the
    worst offenders in a contact sheet."""
    import json

    from avatar_platform.core.paths import ensure_writable_dir, user_path
    from avatar_platform.formats.dataset_card import read_card
    from avatar_platform.pipelines.evaluation import view_classifier
    from avatar_platform.pipelines.inference.sampling import write_png

    folder = user_path(folder)
    read_card(folder)  # a folder that is no dataset fails before the classifier loads
    model, card = view_classifier.load(user_path(classifier) if classifier else None)
    summary, offenders, images = view_classifier.audit(folder, model, worst)
    summary["classifier"] = {k: card.get(k) for k in ("command", "bin_accuracy", "yaw_error_deg")}
    out = ensure_writable_dir(user_path(out) if out else folder / "audit")
    (out / "audit.json").write_text(json.dumps({**summary, "offenders": offenders}, indent=2) + "\n")
    sheet = write_png(view_classifier.contact_sheet(images, offenders), out / "offenders.png")
    typer.echo(f"{'view':<7} {'pictures':>8} {'disagree':>8} {'mean yaw error':>15}")
    for name, row in summary["per_view"].items():
        typer.echo(f"{name:<7} {row['pictures']:>8} {row['disagree']:>8} {row['mean_yaw_error_deg']:>14.1f}°")
    share = summary["disagree"] / max(summary["pictures"], 1)
    typer.echo(f"disagree  {summary['disagree']} of {summary['pictures']} pictures ({share:.1%})")
    typer.echo(f"audit     {out / 'audit.json'}")
    typer.echo(f"offenders {sheet} (label>seen as, yaw error in degrees)")
