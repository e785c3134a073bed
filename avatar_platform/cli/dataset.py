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
