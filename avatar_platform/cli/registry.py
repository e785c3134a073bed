"""`avatar-platform registry`: register trained models in MLflow, list them, promote, roll back.

Thin: each command calls `avatar_platform.pipelines.inference.registry` and prints plain lines.
"""

from __future__ import annotations

import typer

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.pipelines.inference.registry import MODEL_NAME

app = typer.Typer(
    help="The MLflow model registry: register, list, promote (with an FID gate), roll back.",
    no_args_is_help=True,
)


def _fid(fid: float | None) -> str:
    return "-" if fid is None else f"{fid:g}"


@app.command()
def register(
    path_or_run: str = typer.Argument(
        ..., metavar="PATH_OR_RUN", help="a training output folder, a model folder, or a run id"
    ),
    name: str = typer.Option(MODEL_NAME, help="registered model name"),
    fid: float | None = typer.Option(None, help="the generator's FID (default: metrics.json)"),
) -> None:
    """Register a trained model (a diffusion model brings the generator it was trained on)."""
    from avatar_platform.pipelines.inference import registry

    version = registry.register(path_or_run, name=name, fid=fid)
    tags = version.tags
    typer.echo(
        f"registered {name} version {version.version} ({tags.get('kind')}, FID {_fid(registry.version_fid(version))})"
    )
    typer.echo(f"next     avatar-platform registry promote {name} {version.version} --alias champion")


@app.command(name="list")
def list_(
    name: str = typer.Option(MODEL_NAME, help="registered model name"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """The versions of a model, newest first, with aliases, FID and kind."""
    import dataclasses
    import json

    from avatar_platform.pipelines.inference import registry

    versions = registry.list_versions(name)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(v) for v in versions], indent=2))
        return
    typer.echo(f"{'version':>7}  {'aliases':<20} {'fid':>8}  {'kind':<15} {'created':<23} source")
    for v in versions:
        typer.echo(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {_fid(v.fid):>8}  "
            f"{v.kind or '-':<15} {v.created:<23} {v.source or '-'}"
        )


@app.command()
def promote(
    name: str = typer.Argument(..., help="registered model name, e.g. styleavatar3d"),
    version: str = typer.Argument(..., help="the version to promote, or 'latest'"),
    alias: str = typer.Option(..., help="the alias to move, e.g. champion"),
    force: bool = typer.Option(False, help="promote even if its FID is worse than the holder's"),
) -> None:
    """Point an alias at a version; refused when its FID is worse than the current holder's."""
    from avatar_platform.pipelines.inference import registry

    if version == "latest":
        versions = registry.list_versions(name)  # newest first; an unknown name is its own error
        number = versions[0].version if versions else 0
    elif version.isdigit() and int(version) >= 1:
        number = int(version)
    else:
        raise AvatarPlatformError(
            f"version '{version}' is not a version", expected="a number >= 1 or 'latest'"
        )
    done = registry.promote(name, number, alias, force=force)
    if done.previous == done.version:
        typer.echo(f"{name}@{alias} is already version {done.version}")
        return
    was = "" if done.previous is None else f" (was version {done.previous}, FID {_fid(done.previous_fid)})"
    typer.echo(f"{name}@{alias} → version {done.version} (FID {_fid(done.fid)}){was}")


@app.command()
def rollback(
    name: str = typer.Argument(..., help="registered model name, e.g. styleavatar3d"),
    alias: str = typer.Option(..., help="the alias to move back, e.g. champion"),
) -> None:
    """Move an alias back to the version that held it before the last promotion."""
    from avatar_platform.pipelines.inference import registry

    done = registry.rollback(name, alias)
    typer.echo(
        f"{name}@{alias} → version {done.version} (FID {_fid(done.fid)}), back from version {done.previous}"
    )
