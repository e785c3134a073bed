"""The MLflow model registry of `styleavatar3d`: register trained models, list, promote, roll back.

A registered version is the pyfunc of `pipelines/inference/pyfunc.py` with its model folder as
data; `sample --model models:/styleavatar3d@champion` and `serve` read it back through an alias.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import configure_mlflow, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAME = "styleavatar3d"
EXPERIMENT = "registry"
LOADER_MODULE = "avatar_platform.pipelines.inference.pyfunc"
RUN_ID = re.compile(r"[0-9a-f]{32}")
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ALIAS_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")
# Files a package never carries: pickles (optimiser state, torch checkpoints) would make loading
# run code, and inference needs none of them. Dot-files are half-written temporaries.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
HISTORY_TAG = "previous.{alias}"  # registered-model tag: earlier holders of the alias, oldest first
HISTORY_LENGTH = 50
REACH_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as `registry list` shows it."""

    version: int
    aliases: list[str]
    fid: float | None
    kind: str | None
    source: str | None
    created: str


@dataclass(frozen=True)
class Promotion:
    """What `promote` or `rollback` did: the alias now on `version`, formerly on `previous`."""

    name: str
    alias: str
    version: int
    previous: int | None
    fid: float | None
    previous_fid: float | None


def check_reachable(timeout: float = REACH_TIMEOUT_S) -> None:
    """Fail in seconds on a tracking server nobody answers at (MLflow retries for minutes)."""
    uri = tracking_uri()
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return  # a local store (SQLite, files) is reached through the file system
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        raise AvatarPlatformError(
            f"cannot reach the MLflow registry at {uri} ({err.strerror or err})",
            expected="a running MLflow tracking server",
            fix="start the server, correct MLFLOW_TRACKING_URI, or unset it to use the local "
            "store under AVATAR_HOME",
        ) from None


def _client() -> MlflowClient:
    check_reachable()
    # configure_mlflow before the first client: it quiets MLflow's logs (the store's set-up)
    return configure_mlflow(EXPERIMENT).MlflowClient()


def _check_name(name: str) -> None:
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise AvatarPlatformError(
            f"'{name}' is not a model name",
            expected="letters, digits, '_', '.' and '-' (e.g. styleavatar3d)",
        )


def _check_alias(alias: str) -> None:
    if (
        not ALIAS_PATTERN.fullmatch(alias)
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
    ):
        raise AvatarPlatformError(
            f"'{alias}' is not an alias",
            expected="letters, digits, '_' and '-', not 'latest' nor v<number> (e.g. champion)",
        )


def _registered_model(client: MlflowClient, name: str):
    from mlflow.exceptions import MlflowException

    _check_name(name)
    try:
        return client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise AvatarPlatformError(
            f"no registered model '{name}' at {tracking_uri()}",
            expected=f"one of {names}" if names else "a registered model",
            fix="register one with `avatar-platform registry register <training output>`",
        ) from None


def _version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    _registered_model(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise AvatarPlatformError(
            f"'{name}' has no version {version}",
            expected=f"one of {known}",
            fix="see `avatar-platform registry list`",
        ) from None


def version_fid(version: ModelVersion) -> float | None:
    """The FID a version was registered with (its `fid` tag), None when unmeasured."""
    value = version.tags.get("fid")
    return float(value) if value not in (None, "") else None


def _training_run(path: Path, folder: Path) -> str | None:
    """The MLflow run of a training output folder (its run.json), if there is one."""
    for candidate in (path / "run.json", folder.parent / "run.json"):
        if candidate.is_file():
            try:
                run_id = json.loads(candidate.read_text()).get("run_id")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(run_id, str) and RUN_ID.fullmatch(run_id):
                return run_id
    return None


def _is_run_id(text: str) -> bool:
    return bool(RUN_ID.fullmatch(text)) and not Path(text).expanduser().exists()


def _describe(spec: str | Path) -> str:
    """What a version was registered from: a run id, or the absolute path of the folder."""
    text = str(spec).strip()
    return text if _is_run_id(text) else str(Path(text).expanduser().resolve())


def resolve_package(spec: str | Path) -> tuple[Path, str | None]:
    """(model folder, its training run id) of a training output folder, a model folder, or an
    MLflow run id whose run logged a `model` artifact folder (downloaded)."""
    from avatar_platform.pipelines.inference.model_loading import resolve_package_folder

    text = str(spec).strip()
    path = Path(text).expanduser()
    if _is_run_id(text):
        return resolve_package_folder(f"runs:/{text}/model"), text
    folder = resolve_package_folder(path)
    return folder, _training_run(path, folder)


def read_fid(folder: Path) -> float | None:
    """The generator's FID from a package's metrics.json (a diffusion model's or its generator's)."""
    for candidate in (folder / "metrics.json", folder / "generator" / "metrics.json"):
        if candidate.is_file():
            try:
                fid = json.loads(candidate.read_text()).get("fid")
            except (json.JSONDecodeError, AttributeError):
                raise AvatarPlatformError(
                    f"'{candidate}' is not a JSON object", expected='{"fid": <number>, ...}'
                ) from None
            if fid is not None:
                return _checked_fid(fid, str(candidate))
    return None


def _checked_fid(fid, where: str) -> float:
    if (
        isinstance(fid, bool)
        or not isinstance(fid, int | float)
        or not math.isfinite(fid)
        or fid < 0
    ):
        raise AvatarPlatformError(f"the FID in {where} is {fid!r}", expected="a number >= 0")
    return float(fid)


def _stage(folder: Path, staged: Path) -> Path:
    """A copy of the model folder without pickles or temporaries: what the registry stores."""

    def skipped(_directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".") or n.lower().endswith(PICKLE_SUFFIXES)]

    shutil.copytree(folder, staged, ignore=skipped)
    return staged


def register(spec: str | Path, name: str = MODEL_NAME, fid: float | None = None) -> ModelVersion:
    """Log a trained model as a pyfunc version of `name`, in its training run when it has one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from avatar_platform import __version__
    from avatar_platform.pipelines.inference import pyfunc
    from avatar_platform.pipelines.inference.model_loading import (
        is_diffusion_folder,
        load_generator,
    )

    _check_name(name)
    fid = _checked_fid(fid, "--fid") if fid is not None else None
    folder, run_id = resolve_package(spec)
    client = _client()  # before loading: an unreachable registry fails in seconds
    load_generator(folder)  # broken weights are refused here, not when serving
    fid = fid if fid is not None else read_fid(folder)
    kind = "diffusion" if is_diffusion_folder(folder) else "generator-only"

    run = None
    # a run from another store (or deleted) is left alone: the version gets a run of its own
    if run_id:
        with contextlib.suppress(MlflowException):
            run = client.get_run(run_id)
    if run is not None and run.info.lifecycle_stage == "deleted":
        run = None
    if run is not None:
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        mlflow.start_run(run_id=run_id)
    else:
        mlflow.start_run(run_name=f"register-{name}", tags={"source": _describe(spec)})
    try:
        with (
            tempfile.TemporaryDirectory(prefix="avatar-register-") as tmp,
            warnings.catch_warnings(),
        ):
            # an input example would make MLflow load the model to check it; the signature is
            # explicit instead
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                loader_module=LOADER_MODULE,
                data_path=str(_stage(folder, Path(tmp) / "model")),
                signature=pyfunc.signature(),
                # explicit: inferring them would load the model in a subprocess
                pip_requirements=[f"avatar-platform=={__version__}"],
            )
    finally:
        # a training run keeps the status it had; registering is not a training event
        mlflow.end_run(status=run.info.status if run is not None else "FINISHED")
    tags = {"kind": kind, "source": _describe(spec)}
    if fid is not None:
        tags["fid"] = repr(fid)
    if run_id and run is None:
        tags["training_run"] = run_id
    # register_model prints its progress to stderr; the CLI reports the outcome itself
    with contextlib.redirect_stderr(io.StringIO()):
        return mlflow.register_model(info.model_uri, name, tags=tags)


def list_versions(name: str = MODEL_NAME) -> list[VersionInfo]:
    """Every version of `name`, newest first, with its aliases and tags."""
    client = _client()
    aliases = _registered_model(client, name).aliases or {}
    out = []
    for v in client.search_model_versions(f"name = '{name}'"):
        created = datetime.fromtimestamp(v.creation_timestamp / 1000, tz=UTC)
        out.append(
            VersionInfo(
                version=int(v.version),
                aliases=sorted(a for a, held in aliases.items() if str(held) == str(v.version)),
                fid=version_fid(v),
                kind=v.tags.get("kind"),
                source=v.tags.get("source"),
                created=created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
        )
    return sorted(out, key=lambda info: -info.version)


@dataclass(frozen=True)
class ModelReference:
    """The parts of a `models:/` URI: `models:/<name>@<alias>` or `models:/<name>/<version>`."""

    name: str
    version: int | None
    alias: str | None


def parse_models_uri(uri: str) -> ModelReference | None:
    """The parts of a `models:/` URI; None for any other model spec (a folder, `runs:/`)."""
    if not uri.startswith("models:/"):
        return None
    reference = uri.removeprefix("models:/").rstrip("/")
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return ModelReference(name, None, alias)
    name, _, number = reference.rpartition("/")
    if name and number.isdigit():
        return ModelReference(name, int(number), None)
    return ModelReference(reference, None, None)


def pin_alias(uri: str) -> tuple[str, ModelReference | None]:
    """`uri` with an alias replaced by the version it names now, and its parts: loading the
    pinned URI loads exactly the version reported, even if the alias moves meanwhile."""
    reference = parse_models_uri(uri)
    if reference is None or reference.alias is None:
        return uri, reference
    version = int(resolve_alias(reference.name, reference.alias).version)
    return f"models:/{reference.name}/{version}", replace(reference, version=version)


def resolve_alias(name: str, alias: str) -> ModelVersion:
    """The version an alias points to; an unknown alias is an error listing the existing ones."""
    _check_alias(alias)
    client = _client()
    holder = _holder(client, name, alias)
    if holder is None:
        aliases = _registered_model(client, name).aliases or {}
        existing = ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items())) or "none yet"
        raise AvatarPlatformError(
            f"'{name}' has no alias '{alias}' (aliases: {existing})",
            fix=f"promote a version first: avatar-platform registry promote {name} <version> "
            f"--alias {alias}",
        )
    return holder


def _history(client: MlflowClient, name: str, alias: str) -> list[int]:
    raw = _registered_model(client, name).tags.get(HISTORY_TAG.format(alias=alias), "")
    return [int(v) for v in raw.split(",") if v.strip().isdigit()]


def _set_history(client: MlflowClient, name: str, alias: str, history: list[int]) -> None:
    value = ",".join(str(v) for v in history[-HISTORY_LENGTH:])
    client.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), value)


def _holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    aliases = _registered_model(client, name).aliases or {}
    return client.get_model_version(name, str(aliases[alias])) if alias in aliases else None


def _fid_text(fid: float | None) -> str:
    return "no FID" if fid is None else f"FID {fid:g}"


def promote(name: str, version: int | str, alias: str, force: bool = False) -> Promotion:
    """Point `alias` at `version`, unless its FID is worse than the current holder's (`force`)."""
    _check_alias(alias)
    client = _client()
    candidate = _version(client, name, version)
    current = _holder(client, name, alias)
    fid = version_fid(candidate)
    if current is None:
        client.set_registered_model_alias(name, alias, candidate.version)
        return Promotion(name, alias, int(candidate.version), None, fid, None)
    current_fid = version_fid(current)
    result = Promotion(name, alias, int(candidate.version), int(current.version), fid, current_fid)
    if int(current.version) == int(candidate.version):
        return result
    worse = current_fid is not None and (fid is None or fid > current_fid)
    if worse and not force:
        raise AvatarPlatformError(
            f"version {candidate.version} ({_fid_text(fid)}) is worse than version "
            f"{current.version} ({_fid_text(current_fid)}), which holds '{alias}'",
            expected="a candidate with an FID at most the current holder's (lower is better)",
            fix="promote a better model, or pass --force to promote it anyway",
        )
    _set_history(client, name, alias, [*_history(client, name, alias), int(current.version)])
    client.set_registered_model_alias(name, alias, candidate.version)
    return result


def rollback(name: str, alias: str) -> Promotion:
    """Move `alias` back to the version that held it before the last promotion."""
    current = resolve_alias(name, alias)
    client = _client()
    history = _history(client, name, alias)
    if not history:
        raise AvatarPlatformError(
            f"'{name}@{alias}' has no earlier holder to roll back to",
            expected="an alias that was promoted at least twice",
            fix="see `avatar-platform registry list`; promote a version with `registry promote`",
        )
    previous = _version(client, name, history[-1])
    client.set_registered_model_alias(name, alias, previous.version)
    _set_history(client, name, alias, history[:-1])
    return Promotion(name, alias, int(previous.version), int(current.version), version_fid(previous),
                     version_fid(current))  # fmt: skip
