"""Find and load a trained generator from what a user passes as `--model`.

Accepted: a model folder (holding generator.json + safetensors), a training output folder (its
final `model/`, else its latest Ray Train checkpoint), or an MLflow URI (`runs:/<id>/model`,
`models:/<name>/<version>` or `models:/<name>@<alias>`), downloaded to a local cache.
"""

from __future__ import annotations

from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:")


def resolve_model_folder(spec: str | Path) -> Path:
    text = str(spec)
    if text.startswith(MLFLOW_SCHEMES):
        return _download(text)
    path = Path(text).expanduser()
    if (path / "generator.json").is_file():
        return path
    if (path / "model" / "generator.json").is_file():
        return path / "model"
    checkpoints = sorted((path / "ray" / "train").glob("checkpoint_*")) if path.is_dir() else []
    checkpoints = [c for c in checkpoints if (c / "generator.json").is_file()]
    if checkpoints:
        return checkpoints[-1]
    raise AvatarPlatformError(
        f"'{spec}' is not a model",
        expected="a model folder (generator.json + generator.safetensors), a `train gan` output "
        "folder, or an MLflow URI (runs:/<id>/model, models:/<name>@<alias>)",
        fix="pass the --out of `avatar-platform train gan`",
    )


def _download(uri: str) -> Path:
    import mlflow

    from avatar_platform.core.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    if uri.startswith("runs:/") and uri.rstrip("/").count("/") == 1:
        uri = uri.rstrip("/") + "/model"  # a run id alone means its model folder
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as err:  # MLflow raises its own and OSError types for missing things
        raise AvatarPlatformError(
            f"cannot fetch '{uri}' from MLflow at {tracking_uri()} ({str(err).splitlines()[0][:200]})",
            fix="check the run id / model name, and MLFLOW_TRACKING_URI",
        ) from None
    return resolve_model_folder(local)


def load_generator(spec: str | Path, ema: bool = True, device: str = "cpu"):
    """The generator (its EMA weights by default) of a model, in eval mode."""
    from avatar_platform.models.eg3d.generator import TriPlaneGenerator

    folder = resolve_model_folder(spec)
    name = "generator_ema" if ema and (folder / "generator_ema.json").is_file() else "generator"
    return TriPlaneGenerator.from_pretrained(folder, name, map_location=device).eval().to(device)
