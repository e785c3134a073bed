"""A model folder on disk: a GAN (`generator*.json` + `.safetensors`, `discriminator.*`,
`config.json`) or a style diffusion (`style_denoiser.json`, `diffusion.json`, the generator it was
trained on in `generator/`), each with `metrics.json`: the numbers that travel with the model
(the registry's promotion gate reads its `fid`). Pickles (`training_state.pt`) stay in training
outputs: no shipped or registered model carries one.

Finding a model from what a user passes as `--model` / `--generator` / `--init` lives here too
(`resolve_package_folder`): a model folder, a training output folder (its final `model/`, else its
latest Ray Train checkpoint), a downloaded MLflow model, an MLflow URI (`runs:/<id>/model`,
`models:/<name>/<version>`, `models:/<name>@<alias>`: downloaded to a temporary folder), or a
starter shipped in the package (`starter:demo`, its files checked against its card)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from avatar_platform import starters
from avatar_platform.core.errors import AvatarPlatformError

GAN_MARKERS = ("generator_ema.json", "generator.json")
DIFFUSION_MARKER = "style_denoiser.json"
DIFFUSION_META = "diffusion.json"  # a style diffusion's step, schedule, generator source, config
DIFFUSION_FORMAT_VERSION = 1  # of DIFFUSION_META
METRICS_FILE = "metrics.json"
BEST_FOLDER = "best"  # a training output's lowest-FID model so far (gan.keep_best)
EMBEDDED_GENERATOR = "generator"
# a GAN model folder's networks: (the trainer's attribute, the file stem of <stem>.json +
# <stem>.safetensors); a diffusion model embeds its generator's EMA weights and metrics
GAN_NETWORKS = (("G", "generator"), ("G_ema", "generator_ema"), ("D", "discriminator"))
EMBEDDED_GENERATOR_FILES = ("generator_ema.json", "generator_ema.safetensors", METRICS_FILE)
# loading any of these could run code, and inference needs none of them
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def is_gan_folder(path: Path) -> bool:
    return any((Path(path) / marker).is_file() for marker in GAN_MARKERS)


def is_diffusion_folder(path: Path) -> bool:
    return (Path(path) / DIFFUSION_MARKER).is_file()


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def read_metrics(folder: Path) -> dict:
    """The folder's `metrics.json` ({} when there is none), or one error when it is not an object."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return {}
    try:
        numbers = json.loads(path.read_text())
    except json.JSONDecodeError:
        numbers = None
    if not isinstance(numbers, dict):
        raise AvatarPlatformError(f"'{path}' is not a JSON object", expected='{"fid": <number>, ...}')
    return numbers


def write_metrics(folder: Path, numbers: dict, *, keep_existing: bool = True) -> dict:
    """Write `metrics.json`: `numbers`, under what the folder already records when
    `keep_existing` (a training loop's own record, e.g. its FID, wins over the final report)."""
    merged = {**numbers, **(read_metrics(folder) if keep_existing else {})}
    (Path(folder) / METRICS_FILE).write_text(json.dumps(merged, indent=2) + "\n")
    return merged


def replace_folder(staging: Path, folder: Path) -> None:
    """Put the complete folder `staging` where `folder` is (whole or not at all: a reader sees
    the old folder or the new one, never a half-written one)."""
    import shutil

    old = folder.with_name(f".{folder.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def model_fid(folder: Path) -> float | None:
    """The generator's FID of a model: the folder's own `metrics.json`, else its embedded
    generator's (a diffusion model inherits its GAN's)."""
    for candidate in (Path(folder), Path(folder) / EMBEDDED_GENERATOR):
        fid = read_metrics(candidate).get("fid")
        if fid is not None:
            return checked_fid(fid, str(candidate / METRICS_FILE))
    return None


def checked_fid(fid, where: str) -> float:
    if isinstance(fid, bool) or not isinstance(fid, int | float) or not math.isfinite(fid) or fid < 0:
        raise AvatarPlatformError(f"the FID in {where} is {fid!r}", expected="a number >= 0")
    return float(fid)


MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:")


def resolve_package_folder(spec: str | Path) -> Path:
    """The top folder of a model: a GAN model folder, or a diffusion model folder (which holds
    the generator it was trained on in `generator/`)."""
    text = str(spec)
    if text.startswith(MLFLOW_SCHEMES):
        return resolve_package_folder(_download(text))
    if text.startswith(starters.SCHEME):
        return starters.resolve(text)
    path = Path(text).expanduser()
    for candidate in (path, path / "model"):
        if is_diffusion_folder(candidate) or is_gan_folder(candidate):
            return candidate
    if (path / "MLmodel").is_file():
        return resolve_package_folder(_pyfunc_data(path))
    checkpoints = sorted((path / "ray" / "train").glob("checkpoint_*")) if path.is_dir() else []
    checkpoints = [c for c in checkpoints if is_diffusion_folder(c) or is_gan_folder(c)]
    if checkpoints:
        return checkpoints[-1]
    raise AvatarPlatformError(
        f"'{spec}' is not a model",
        expected="a model folder (generator_ema.json + .safetensors, or a diffusion model with "
        "style_denoiser.json), a `train` output folder, an MLflow URI (runs:/<id>/model, "
        "models:/<name>@<alias>) or a shipped starter (starter:demo)",
        fix="pass the --out of `avatar-platform train gan` or `train diffusion`",
    )


def resolve_model_folder(spec: str | Path) -> Path:
    """The GAN model folder to sample seeds from (a diffusion model's embedded generator)."""
    folder = resolve_package_folder(spec)
    if not is_diffusion_folder(folder):
        return folder
    generator = folder / EMBEDDED_GENERATOR
    if not is_gan_folder(generator):
        raise AvatarPlatformError(
            f"the diffusion model '{folder}' has no generator in '{generator}'",
            expected="the GAN model folder it was trained on, embedded as generator/",
            fix="use the complete output of `avatar-platform train diffusion`",
        )
    return generator


def _pyfunc_data(folder: Path) -> Path:
    """Where a logged pyfunc model keeps its `data_path` (the MLmodel file says; not guessed)."""
    import yaml

    try:
        flavors = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]
        data = (folder / flavors["python_function"]["data"]).resolve()
    except (yaml.YAMLError, OSError, KeyError, TypeError) as err:
        raise AvatarPlatformError(
            f"'{folder}' is an MLflow model without a model folder ({type(err).__name__}: {err})",
            expected="a pyfunc model logged by `avatar-platform registry register`",
        ) from None
    # a hand-edited MLmodel could point anywhere on the disk
    if not data.is_relative_to(folder.resolve()):
        raise AvatarPlatformError(
            f"'{folder / 'MLmodel'}' points outside its model ('{data}')",
            expected="a data path inside the MLflow model",
        )
    return data


def _download(uri: str) -> Path:
    import mlflow

    from avatar_platform.core.tracking import point_mlflow, tracking_uri
    from avatar_platform.formats.model_uri import check_reachable, pin_alias

    check_reachable()
    pin_alias(uri)  # an unknown alias gets the error listing the others
    point_mlflow()
    if uri.startswith("runs:/") and uri.rstrip("/").count("/") == 1:
        uri = uri.rstrip("/") + "/model"  # a run id alone means its model folder
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as err:  # MLflow raises its own and OSError types for missing things
        raise AvatarPlatformError(
            f"cannot fetch '{uri}' from MLflow at {tracking_uri()} ({str(err).splitlines()[0][:200]})",
            fix="check the run id / model name, and MLFLOW_TRACKING_URI",
        ) from None
    return local


def load_generator(spec: str | Path, ema: bool = True, device: str = "cpu"):
    """The generator (its EMA weights by default) of a model, in eval mode."""
    from avatar_platform.models.eg3d.generator import TriPlaneGenerator

    folder = resolve_model_folder(spec)
    name = "generator_ema" if ema and (folder / "generator_ema.json").is_file() else "generator"
    return TriPlaneGenerator.from_pretrained(folder, name, map_location=device).eval().to(device)
