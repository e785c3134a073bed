"""`avatar-platform sample`: views, turntables, latent walks and meshes from seeds, or from a
picture through the style diffusion."""

from __future__ import annotations

from pathlib import Path

import typer

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.avatar_spec import SAMPLE_DEFAULTS, bounds

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


def _spec_option(field: str, help: str):
    """An option with the bounds of `AvatarSpec`'s field and its default (`sample`'s own where
    SAMPLE_DEFAULTS has one): the CLI, the pyfunc and the HTTP API share one request shape."""
    default, low, high = bounds(field)
    return typer.Option(SAMPLE_DEFAULTS.get(field, default), min=low, max=high, help=help)


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
    num_samples: int = _spec_option("num_samples", "avatars per --image (they differ)"),
    guidance: float | None = _spec_option("guidance", "guidance λ for --image (default: the model's)"),
    views: int = _spec_option("views", "views per seed in the grid"),
    truncation: float = _spec_option("truncation", "truncation ψ (1 = none)"),
    turntable: bool = typer.Option(True, help="a turntable GIF per seed"),
    frames: int = _spec_option("frames", "frames of turntables and walks"),
    walk: str | None = typer.Option(None, help="a latent walk between two seeds, e.g. '0,1'"),
    walk_space: str = typer.Option("w", help="interpolate in w or z"),
    mesh: bool = typer.Option(False, help="export a mesh per seed"),
    mesh_resolution: int = _spec_option("mesh_resolution", "marching-cubes grid side"),
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
    refine: int = typer.Option(
        0,
        help="with --image: then fit the avatar to the picture for this many steps (projection "
        "of w, starting from the diffusion's best sample); 0 = the diffusion's samples only",
    ),
    tune: int = typer.Option(
        0, help="with --image: then pivotal tuning (PTI) of a copy of the generator, this many steps"
    ),
    w_plus: bool = typer.Option(False, help="--refine fits one w per layer (w+) instead of one w"),
    fit_camera: bool = typer.Option(
        False, help="--refine also estimates the picture's yaw and pitch (from the front)"
    ),
    out: Path = typer.Option(Path("samples"), help="output folder"),
) -> None:
    """Render avatars of a trained model: a multi-view grid, turntables, a latent walk, meshes."""
    seed_list = parse_seeds(seeds) if seeds is not None else []
    if refine or tune:
        from avatar_platform.pipelines.inference.refine import check_steps

        check_steps(refine, tune)
        if image is None:
            raise AvatarPlatformError(
                "--refine and --tune fit an avatar to a picture, and no --image was given",
                fix="add --image PICTURE (or drop --refine/--tune)",
            )
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
    from avatar_platform.formats.model_folder import is_diffusion_folder
    from avatar_platform.pipelines.inference.refine import load_pivot

    pivot = load_pivot(package)
    if seeds is None and image is None and pivot is None:
        seed_list = [0, 1, 2, 3]
    use_diffusion = picture is not None and (is_diffusion_folder(package) or not (refine or tune))
    if use_diffusion:
        from avatar_platform.pipelines.inference.style_sampling import load_style_diffusion

        # a model without a style diffusion fails before --out exists (loaded once: cached)
        load_style_diffusion(package, str(next(generator.parameters()).device))
    out = ensure_writable_dir(user_path(out))  # made only once everything it needs is there
    avatars = {f"seed{seed}": sampling.ws_for_seed(generator, seed, truncation) for seed in seed_list}
    if pivot is not None and seeds is None and image is None:
        avatars["pivot"] = pivot  # a refined avatar's own w (sample --image … --refine)
    candidates = None
    if picture is not None:
        picture.save(out / "input.png")
        typer.echo(f"input    {out / 'input.png'}")
    if use_diffusion:
        from avatar_platform.pipelines.inference.style_sampling import ws_from_image

        candidates = ws_from_image(package, generator, picture, num_samples, guidance)
        avatars.update({f"image-sample{i}": candidates[i : i + 1] for i in range(num_samples)})
    if avatars:
        grid = sampling.multiview_grid(generator, list(avatars.values()), views)
        path = sampling.write_png(grid, out / "views.png")
        typer.echo(f"views    {path} (rows: {', '.join(avatars)}; columns: {views} yaws, front first)")
    writer = AvatarWriter(
        out,
        frames if turntable else 0,
        mesh_resolution if mesh else 0,
        level,
        mesh_level,
        cleanup,
        mesh_format,
    )
    for name, ws in avatars.items():
        writer.write(generator, name, ws)
    if refine or tune:
        refine_and_write(
            generator,
            picture,
            candidates,
            refine,
            tune,
            out,
            writer,
            source=user_model_spec(model),
            w_plus=w_plus,
            fit_camera=fit_camera,
            views=views,
        )
    if walk_pair:
        frames_ = sampling.latent_walk(generator, *walk_pair, frames, truncation, walk_space)
        path = out / f"walk-{walk_pair[0]}-{walk_pair[1]}-{walk_space}.gif"
        typer.echo(f"walk     {sampling.write_gif(frames_, path)}")


class AvatarWriter:
    """An avatar's turntable GIF and mesh (+ its 5-side preview) in the output folder."""

    def __init__(
        self, out: Path, frames: int, mesh_resolution: int, level, mesh_level: str, cleanup: dict, fmt: str
    ):
        self.out, self.frames, self.resolution = out, frames, mesh_resolution
        self.level, self.mesh_level, self.cleanup, self.fmt = level, mesh_level, cleanup, fmt

    def write(self, generator, name: str, ws) -> None:
        from avatar_platform.pipelines.inference import sampling

        if self.frames:
            frames_ = sampling.turntable(generator, ws, self.frames)
            typer.echo(f"turntable {sampling.write_gif(frames_, self.out / f'turntable-{name}.gif')}")
        if not self.resolution:
            return
        result = sampling.mesh_for_ws(generator, ws, self.resolution, self.level, **self.cleanup)
        if len(result.faces) == 0:
            print(
                f"warning: {name} has no surface at --mesh-level {self.mesh_level} "
                "(an early model is thin): try --mesh-level auto",
                flush=True,
            )
            return
        path = self.out / f"mesh-{name}.{self.fmt}"
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
        preview = sampling.write_png(mesh_preview(result), self.out / f"mesh-{name}.png")
        typer.echo(f"mesh view {preview}")


def refine_and_write(
    generator,
    picture,
    candidates,
    refine: int,
    tune: int,
    out: Path,
    writer: AvatarWriter,
    *,
    source: str,
    w_plus: bool,
    fit_camera: bool,
    views: int,
) -> None:
    """`--refine`/`--tune`: fit the avatar to the picture, then write `refined/` (a model folder:
    sample --model it), the loss curve, the before/after views and the refined avatar's
    turntable and mesh."""
    import json

    from avatar_platform.core.progress import progress_bar
    from avatar_platform.formats.pictures import image_tensor
    from avatar_platform.pipelines.inference import refine as refining
    from avatar_platform.pipelines.inference import sampling

    target = image_tensor(picture, generator.config.img_resolution)[None]
    target = target.to(next(generator.parameters()).device)
    if candidates is None:
        typer.echo("refine   the model has no style diffusion: the projection starts from the mean w")
    with progress_bar("refining", refine + tune) as bar:
        result = refining.refine(
            generator,
            target,
            candidates,
            refine,
            tune,
            w_plus=w_plus,
            fit_camera=fit_camera,
            progress=lambda step, record: bar.advance(1),
        )
    typer.echo(f"refine   start: {result.start}; perceptual features: {result.features}")
    steps = [r for r in result.losses if r["phase"] != "start"]
    if steps:
        first, last = steps[0], steps[-1]
        typer.echo(
            f"refine   loss {first['loss']:.4f} → {last['loss']:.4f} (pixel {last['pixel']:.4f}, "
            f"perceptual {last['perceptual']:.4f}); camera yaw {result.yaw:.1f}°, pitch {result.pitch:.1f}°"
        )
    folder = refining.save_refined(
        result, out / "refined", source=source, picture_hash=refining.picture_sha256(picture)
    )
    (out / "refine-losses.json").write_text(json.dumps(result.losses, indent=1) + "\n")
    curve = sampling.write_png(refining.loss_plot(result.losses), out / "refine-loss.png")
    sheet = refining.before_after(generator, result, target, views)
    compare = sampling.write_png(sheet, out / "refine-before-after.png")
    typer.echo(f"refined  {folder} (a model folder: sample --model {folder})")
    typer.echo(f"refine   {curve} (loss per step), {compare} (rows: before, after; input first)")
    writer.write(result.generator, "refined", result.ws)
