"""`avatar-platform sample`: views, turntables, latent walks and meshes from a trained generator."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.core.errors import AvatarPlatformError


def parse_seeds(text: str) -> list[int]:
    """'0,1,5' or '0-7' (or a mix: '0-3,9') → seeds; negative or malformed is an error."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(p) for p in part.split("-", 1))
                if low > high:
                    raise ValueError
                seeds += range(low, high + 1)
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise AvatarPlatformError(
            f"cannot read seeds '{text}'",
            expected="non-negative integers like '0,1,5' or a range '0-7'",
        ) from None
    if not seeds or min(seeds) < 0:
        raise AvatarPlatformError(f"no valid seeds in '{text}'", expected="seeds >= 0")
    if len(seeds) > 256:
        raise AvatarPlatformError(f"{len(seeds)} seeds asked for", expected="at most 256 per call")
    return seeds


def sample(
    model: str = typer.Option(..., help="model folder, `train gan` output folder, or MLflow URI"),
    seeds: str = typer.Option("0-3", help="seeds: '0,1,5' or '0-7'"),
    views: int = typer.Option(4, min=1, max=64, help="views per seed in the grid"),
    truncation: float = typer.Option(0.7, min=0.0, max=1.0, help="truncation ψ (1 = none)"),
    turntable: bool = typer.Option(True, help="a turntable GIF per seed"),
    frames: int = typer.Option(24, min=2, max=360, help="frames of turntables and walks"),
    walk: str | None = typer.Option(None, help="a latent walk between two seeds, e.g. '0,1'"),
    walk_space: str = typer.Option("w", help="interpolate in w or z"),
    mesh: bool = typer.Option(False, help="export a mesh per seed"),
    mesh_resolution: int = typer.Option(128, min=16, max=1024, help="marching-cubes grid side"),
    mesh_level: str = typer.Option(
        "10", help="iso-level on the raw density (EG3D: 10), or 'auto' for early models"
    ),
    mesh_format: str = typer.Option("glb", help="glb | ply | obj"),
    out: Path = typer.Option(Path("samples"), help="output folder"),
) -> None:
    """Render a trained generator: a multi-view grid, turntables, a latent walk, meshes."""
    seed_list = parse_seeds(seeds)
    walk_pair = parse_seeds(walk) if walk else None
    if walk_pair is not None and len(walk_pair) != 2:
        raise AvatarPlatformError(f"--walk takes two seeds, got '{walk}'", expected="e.g. '0,1'")
    if walk_space not in ("w", "z"):
        raise AvatarPlatformError(f"--walk-space '{walk_space}'", expected="w or z")
    try:
        level = None if mesh_level == "auto" else float(mesh_level)
    except ValueError:
        raise AvatarPlatformError(
            f"--mesh-level '{mesh_level}'", expected="a number or 'auto'"
        ) from None
    if mesh_format not in ("glb", "ply", "obj"):
        raise AvatarPlatformError(f"--mesh-format '{mesh_format}'", expected="glb, ply or obj")

    from avatar_platform.core.paths import ensure_writable_dir
    from avatar_platform.pipelines.inference import sampling
    from avatar_platform.pipelines.inference.model_loading import load_generator

    generator = load_generator(model)
    out = ensure_writable_dir(out)
    avatars = {f"seed{seed}": sampling.ws_for_seed(generator, seed, truncation)
               for seed in seed_list}  # fmt: skip
    grid = sampling.multiview_grid(generator, list(avatars.values()), views)
    typer.echo(f"views    {sampling.write_png(grid, out / 'views.png')}")
    for name, ws in avatars.items():
        if turntable:
            frames_ = sampling.turntable(generator, ws, frames)
            typer.echo(f"turntable {sampling.write_gif(frames_, out / f'turntable-{name}.gif')}")
        if mesh:
            result = sampling.mesh_for_ws(generator, ws, mesh_resolution, level)
            if len(result.faces) == 0:
                print(f"warning: {name} has no surface at --mesh-level {mesh_level} "
                      "(an early model is thin): try --mesh-level auto", flush=True)  # fmt: skip
                continue
            path = out / f"mesh-{name}.{mesh_format}"
            result.export(path)
            typer.echo(f"mesh     {path} ({len(result.vertices)} vertices)")
    if walk_pair:
        frames_ = sampling.latent_walk(generator, *walk_pair, frames, truncation, walk_space)
        path = out / f"walk-{walk_pair[0]}-{walk_pair[1]}-{walk_space}.gif"
        typer.echo(f"walk     {sampling.write_gif(frames_, path)}")
