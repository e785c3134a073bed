"""`avatar-platform sample`: views, turntables, latent walks and meshes from seeds, or from a
picture through the style diffusion."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.core.errors import AvatarPlatformError

MESH_SMOOTH = 5  # = sampling.MESH_SMOOTH (not imported here: it imports torch)


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
            f"cannot read seeds '{text}'", expected="non-negative integers like '0,1,5' or a range '0-7'"
        ) from None
    if not seeds or min(seeds) < 0:
        raise AvatarPlatformError(f"no valid seeds in '{text}'", expected="seeds >= 0")
    if len(seeds) > 256:
        raise AvatarPlatformError(f"{len(seeds)} seeds asked for", expected="at most 256 per call")
    return seeds


def sample(
    model: str = typer.Option(
        ...,
        help="a model or `train` output folder, an MLflow URI (models:/styleavatar3d@champion) "
        "or a shipped starter (starter:demo)",
    ),
    seeds: str | None = typer.Option(None, help="seeds: '0,1,5' or '0-7' (default 0-3 without --image)"),
    image: Path | None = typer.Option(
        None, help="a picture (PNG/JPEG/WebP) → avatars, through the model's style diffusion"
    ),
    num_samples: int = typer.Option(4, min=1, max=16, help="avatars per --image (they differ)"),
    guidance: float | None = typer.Option(
        None, min=0.0, max=30.0, help="guidance λ for --image (default: the model's)"
    ),
    views: int = typer.Option(4, min=1, max=64, help="views per seed in the grid"),
    truncation: float = typer.Option(0.7, min=0.0, max=1.0, help="truncation ψ (1 = none)"),
    turntable: bool = typer.Option(True, help="a turntable GIF per seed"),
    frames: int = typer.Option(24, min=2, max=360, help="frames of turntables and walks"),
    walk: str | None = typer.Option(None, help="a latent walk between two seeds, e.g. '0,1'"),
    walk_space: str = typer.Option("w", help="interpolate in w or z"),
    mesh: bool = typer.Option(False, help="export a mesh per seed"),
    mesh_resolution: int = typer.Option(128, min=16, max=1024, help="marching-cubes grid side"),
    mesh_level: str = typer.Option(
        "10",
        help="iso-level on the raw density (EG3D: 10), or 'auto': where one ray step of the "
        "renderer turns 50% opaque (early models: where 8% of the box is inside)",
    ),
    mesh_keep: str = typer.Option(
        "largest", help="largest: only the largest connected piece | all: every piece"
    ),
    mesh_smooth: int = typer.Option(
        MESH_SMOOTH, help="Taubin smoothing iterations (0: none; volume-preserving)"
    ),
    mesh_faces: int | None = typer.Option(
        None, help="decimate to at most this many faces (default: no limit)"
    ),
    mesh_format: str = typer.Option("glb", help="glb | ply | obj"),
    out: Path = typer.Option(Path("samples"), help="output folder"),
) -> None:
    """Render avatars of a trained model: a multi-view grid, turntables, a latent walk, meshes."""
    if seeds is None and image is None:
        seeds = "0-3"
    seed_list = parse_seeds(seeds) if seeds is not None else []
    walk_pair = parse_seeds(walk) if walk else None
    if walk_pair is not None and len(walk_pair) != 2:
        raise AvatarPlatformError(f"--walk takes two seeds, got '{walk}'", expected="e.g. '0,1'")
    if walk_space not in ("w", "z"):
        raise AvatarPlatformError(f"--walk-space '{walk_space}'", expected="w or z")
    try:
        level = None if mesh_level == "auto" else float(mesh_level)
    except ValueError:
        raise AvatarPlatformError(f"--mesh-level '{mesh_level}'", expected="a number or 'auto'") from None
    if mesh_format not in ("glb", "ply", "obj"):
        raise AvatarPlatformError(f"--mesh-format '{mesh_format}'", expected="glb, ply or obj")
    if mesh_keep not in ("largest", "all"):
        raise AvatarPlatformError(f"--mesh-keep '{mesh_keep}'", expected="largest or all")
    if mesh_smooth < 0:
        raise AvatarPlatformError(f"--mesh-smooth {mesh_smooth}", expected="iterations >= 0")
    if mesh_faces is not None and mesh_faces <= 0:
        raise AvatarPlatformError(f"--mesh-faces {mesh_faces}", expected="a face budget >= 1")
    cleanup = {"keep": mesh_keep, "smooth": mesh_smooth, "faces": mesh_faces}

    from avatar_platform.core.paths import ensure_writable_dir, user_model_spec, user_path
    from avatar_platform.formats.model_folder import load_generator, resolve_package_folder
    from avatar_platform.pipelines.inference import sampling

    picture = None
    if image is not None:
        from avatar_platform.formats.pictures import load_image

        picture = load_image(user_path(image))  # a bad picture fails before any model is loaded
    package = resolve_package_folder(user_model_spec(model))
    generator = load_generator(package)
    if picture is not None:
        from avatar_platform.pipelines.inference.style_sampling import load_style_diffusion

        # a model without a style diffusion fails before --out exists (loaded once: cached)
        load_style_diffusion(package, str(next(generator.parameters()).device))
    out = ensure_writable_dir(user_path(out))  # made only once everything it needs is there
    avatars = {f"seed{seed}": sampling.ws_for_seed(generator, seed, truncation) for seed in seed_list}
    if picture is not None:
        from avatar_platform.pipelines.inference.style_sampling import ws_from_image

        ws = ws_from_image(package, generator, picture, num_samples, guidance)
        avatars.update({f"image-sample{i}": ws[i : i + 1] for i in range(num_samples)})
        picture.save(out / "input.png")
        typer.echo(f"input    {out / 'input.png'}")
    grid = sampling.multiview_grid(generator, list(avatars.values()), views)
    path = sampling.write_png(grid, out / "views.png")
    typer.echo(f"views    {path} (rows: {', '.join(avatars)}; columns: {views} yaws, front first)")
    for name, ws in avatars.items():
        if turntable:
            frames_ = sampling.turntable(generator, ws, frames)
            typer.echo(f"turntable {sampling.write_gif(frames_, out / f'turntable-{name}.gif')}")
        if mesh:
            result = sampling.mesh_for_ws(generator, ws, mesh_resolution, level, **cleanup)
            if len(result.faces) == 0:
                print(
                    f"warning: {name} has no surface at --mesh-level {mesh_level} "
                    "(an early model is thin): try --mesh-level auto",
                    flush=True,
                )
                continue
            path = out / f"mesh-{name}.{mesh_format}"
            result.export(path)
            rule = result.metadata.get("level_rule")
            note = " (early model: no density reaches the opacity level)"
            note = note if "fallback" in (rule or "") else ""
            typer.echo(
                f"mesh     {path} ({len(result.vertices)} vertices, {len(result.faces)} "
                f"faces, level {result.metadata['level']:.3g}{note})"
            )
            from avatar_platform.pipelines.inference.mesh_preview import mesh_preview

            # the mesh itself, rendered: front, ¾, left, back, right
            preview = sampling.write_png(mesh_preview(result), out / f"mesh-{name}.png")
            typer.echo(f"mesh view {preview}")
    if walk_pair:
        frames_ = sampling.latent_walk(generator, *walk_pair, frames, truncation, walk_space)
        path = out / f"walk-{walk_pair[0]}-{walk_pair[1]}-{walk_space}.gif"
        typer.echo(f"walk     {sampling.write_gif(frames_, path)}")
