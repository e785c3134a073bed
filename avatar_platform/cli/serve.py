"""`avatar-platform serve`: the model behind Ray Serve on this machine (or a Ray cluster), and
`serve config`: the same application as a Serve config file for a KubeRay RayService."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import typer

from avatar_platform.cli.common import PRESET_HELP, RAY_ADDRESS, echo_err
from avatar_platform.core.errors import AvatarPlatformError

APP_NAME = "styleavatar3d"

app = typer.Typer(
    help="Serve a model over HTTP on Ray Serve (API, web page, autoscaled replicas).",
    no_args_is_help=False,
    invoke_without_command=True,
)

MODEL = typer.Option(
    None,
    help="model folder, `train` output, MLflow URI (models:/styleavatar3d@champion) or the shipped starter:demo",
)
PRESET = typer.Option("demo", help=PRESET_HELP)
CONFIG = typer.Option(None, help="YAML file whose `serve:` section overrides the preset")
NUM_GPUS = typer.Option(None, help="GPUs per model replica")
MIN_REPLICAS = typer.Option(None, help="fewest model replicas")
MAX_REPLICAS = typer.Option(None, help="most model replicas")
MAX_BATCH = typer.Option(None, help="avatars a replica renders together")


def _config(model, preset, config_file, overrides: dict):
    from avatar_platform.core.config import resolve_config
    from avatar_platform.serve.config import ServeConfig

    config = resolve_config(ServeConfig, "serve", preset, config_file, {"model": model, **overrides})
    if not config.model:
        raise AvatarPlatformError(
            "no model to serve",
            expected="--model: a model folder, a `train` output, an MLflow URI or starter:demo",
            fix="pass --model models:/styleavatar3d@champion (see `avatar-platform registry list`)",
        )
    return config


def _check_model(spec: str) -> str:
    """Fail here, in seconds, on a model the replicas could not load: a missing folder or
    registry, or an alias nobody holds. Returns what will be served, in words."""
    if spec.startswith("models:/"):
        from avatar_platform.pipelines.inference import registry

        registry.check_reachable()
        _, reference = registry.pin_alias(spec)
        return f"{spec} (version {reference.version})" if reference.alias else spec
    if spec.startswith(("runs:/", "mlflow-artifacts:")):
        return spec
    from avatar_platform.formats.model_folder import resolve_package_folder

    return str(resolve_package_folder(spec))


def _check_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise AvatarPlatformError(
                f"cannot listen on {host}:{port} ({err.strerror})",
                fix="stop what uses that port, or pass another --port",
            ) from None


@app.callback()
def serve(
    ctx: typer.Context,
    model: str | None = MODEL,
    preset: str = PRESET,
    config: Path | None = CONFIG,
    host: str | None = typer.Option(None, help="HTTP host (default 127.0.0.1: this machine)"),
    port: int | None = typer.Option(None, help="HTTP port (default 8000)"),
    num_gpus: float | None = NUM_GPUS,
    min_replicas: int | None = MIN_REPLICAS,
    max_replicas: int | None = MAX_REPLICAS,
    max_batch_size: int | None = MAX_BATCH,
    ray_address: str | None = RAY_ADDRESS,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the resolved config and exit"),
) -> None:
    """Serve a model: POST /v1/avatars, the web page at /, the spec at /openapi.json.

    The API key, if any, is read from AVATAR_API_KEY (never from a flag: flags show in `ps`).
    """
    if ctx.invoked_subcommand is not None:
        return
    overrides = {
        "host": host,
        "port": port,
        "num_gpus": num_gpus,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "max_batch_size": max_batch_size,
    }
    resolved = _config(model, preset, config, overrides)
    if dry_run:
        typer.echo(resolved.model_dump_json(indent=2))
        return
    what = _check_model(resolved.model)
    _check_port(resolved.host, resolved.port)

    from avatar_platform.core.ray_runtime import check_ray_address, init_ray
    from avatar_platform.core.tracking import tracking_uri

    args = resolved.application_args()
    args.setdefault("mlflow_tracking_uri", tracking_uri())
    api_key = os.environ.get(resolved.api_key_env) or None
    check_ray_address(ray_address)
    init_ray(ray_address, min_cpus=4)

    import logging

    from ray import serve as ray_serve

    from avatar_platform.serve.app import build_app

    # Serve's start-up notices repeat what is printed below; its warnings and errors still show
    logging.getLogger("ray.serve").setLevel(logging.WARNING)

    # Ctrl-C and `kill` both stop the server cleanly; a shell that started it in the background
    # (`&`) made it ignore SIGINT, hence the explicit handlers
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = f"http://{resolved.host}:{resolved.port}"
    echo_err(f"loading {what} into {resolved.min_replicas or 1} replica(s)…")
    ray_serve.start(
        proxy_location=resolved.proxy_location,
        http_options={
            "host": resolved.host,
            "port": resolved.port,
            "request_timeout_s": resolved.request_timeout_s + 10,
        },
    )
    try:
        # the host goes to the app too: without a key it answers only requests addressed to it
        app_args = {**args, "host": resolved.host, "api_key": api_key}
        ray_serve.run(build_app(app_args), name=APP_NAME, route_prefix="/")
        typer.echo(f"serving {what} at {url}/")
        typer.echo(f"  web page  {url}/")
        typer.echo(f"  API       POST {url}/v1/avatars   (spec: {url}/openapi.json)")
        keyless = f"none (answers only requests addressed to {resolved.host} or localhost)"
        typer.echo(f"  API key   {'required (AVATAR_API_KEY)' if api_key else keyless}")
        typer.echo("Ctrl-C stops the server.")
        sys.stdout.flush()  # a pipe is block-buffered, and the server runs until stopped
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        echo_err("stopping…")
    finally:
        ray_serve.shutdown()


@app.command(name="config")
def config_file(
    model: str | None = MODEL,
    preset: str = typer.Option("paper", help=PRESET_HELP),
    config: Path | None = CONFIG,
    host: str = typer.Option("0.0.0.0", help="HTTP host inside the cluster"),
    port: int = typer.Option(8000, help="HTTP port"),
    num_gpus: float | None = NUM_GPUS,
    min_replicas: int | None = MIN_REPLICAS,
    max_replicas: int | None = MAX_REPLICAS,
    max_batch_size: int | None = MAX_BATCH,
    out: Path | None = typer.Option(None, help="write here (default: print)"),
) -> None:
    """Write this application's Serve config (YAML): a RayService's serveConfigV2.

    Also for `serve deploy` on a running cluster. The API key is not in it: set AVATAR_API_KEY
    on the pods.
    """
    import yaml

    from avatar_platform.serve.config import IMPORT_PATH

    overrides = {
        "num_gpus": num_gpus,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "max_batch_size": max_batch_size,
    }
    resolved = _config(model, preset, config, overrides)
    document = {
        "proxy_location": resolved.proxy_location,
        "http_options": {"host": host, "port": port, "request_timeout_s": resolved.request_timeout_s + 10},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": resolved.application_args(),
            }
        ],
    }
    text = "# avatar-platform serve config: Ray Serve config for a RayService or `serve deploy`\n"
    text += yaml.safe_dump(document, sort_keys=False)
    if out is None:
        typer.echo(text, nl=False)
        return
    from avatar_platform.core.paths import atomic_write_bytes

    atomic_write_bytes(Path(out), text.encode())
    typer.echo(f"wrote {out}")


@app.command(name="request")
def request(
    url: str = typer.Option("http://127.0.0.1:8000", help="the server (`serve` prints it)"),
    image: Path | None = typer.Option(None, help="a picture (PNG/JPEG/WebP) → avatars"),
    seeds: str | None = typer.Option(None, help="seeds: '0,1,5' or '0-3' (instead of --image)"),
    num_samples: int | None = typer.Option(None, min=1, help="avatars per --image"),
    refine: int | None = typer.Option(
        None, min=0, help="with --image: fit the avatar to it, this many projection steps"
    ),
    tune: int | None = typer.Option(None, min=0, help="with --image: then pivotal-tuning steps"),
    views: int = typer.Option(4, min=1, help="views per avatar"),
    resolution: int | None = typer.Option(None, min=16, help="side of each view"),
    mesh: bool = typer.Option(True, help="a GLB mesh per avatar"),
    mesh_resolution: int | None = typer.Option(None, min=16, help="marching-cubes grid side"),
    turntable: bool = typer.Option(True, help="a turntable GIF per avatar"),
    wait: float = typer.Option(0.0, min=0.0, help="seconds to wait for the server to come up"),
    out: Path = typer.Option(Path("served"), help="folder for the downloaded files"),
) -> None:
    """Ask a running server for avatars and download them (views, turntables, meshes).

    The API key, if the server has one, is read from AVATAR_API_KEY.
    """
    from avatar_platform.cli.sample import parse_seeds
    from avatar_platform.core.paths import ensure_writable_dir
    from avatar_platform.serve import client

    if (image is None) == (seeds is None):
        raise AvatarPlatformError(
            "pass exactly one of --image or --seeds", expected="a picture or seeds to send"
        )
    if image is None and (refine or tune):
        raise AvatarPlatformError(
            "--refine and --tune fit an avatar to a picture, and no --image was given",
            fix="pass --image PICTURE (or drop --refine/--tune)",
        )
    if image is not None:
        from avatar_platform.formats.pictures import load_image

        load_image(image)  # a bad picture fails here, before anything is sent
    out = ensure_writable_dir(out)
    if wait:
        client.wait_until_healthy(url.rstrip("/"), wait)
    options = {
        "views": views,
        "resolution": resolution,
        "mesh": mesh,
        "turntable": turntable,
        "num_samples": num_samples,
        "mesh_resolution": mesh_resolution,
        "refine": refine,
        "tune": tune,
    }
    result = client.request_avatars(
        url,
        out,
        seeds=parse_seeds(seeds) if seeds else None,
        picture=image,
        options=options,
        api_key=os.environ.get("AVATAR_API_KEY") or None,
    )
    model = result["model"]
    version = f" version {model['version']}" if model.get("version") else ""
    typer.echo(f"{len(result['avatars'])} avatar(s) from {model['uri']}{version} → {out}")
    for avatar in result["avatars"]:
        typer.echo(f"  {out / avatar['views_grid'].rsplit('/', 1)[1]}")
