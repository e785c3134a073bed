"""The MLflow model registry of `styleavatar3d`: register trained models, list, promote, roll back.

A registered version is the pyfunc of `pipelines/inference/pyfunc.py` with its model folder as
data; `sample --model models:/styleavatar3d@champion` and `serve` read it back through an alias.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import checked_fid, is_pickle, model_fid
from avatar_platform.formats.model_uri import (  # noqa: F401 (re-exported: the registry's API)
    EXPERIMENT,
    REACH_TIMEOUT_S,
    ModelReference,
    alias_holder,
    check_alias,
    check_name,
    check_reachable,
    parse_models_uri,
    pin_alias,
    registered_model,
    registry_client,
    resolve_alias,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAME = "styleavatar3d"
LOADER_MODULE = "avatar_platform.pipelines.inference.pyfunc"
RUN_ID = re.compile(r"[0-9a-f]{32}")
HISTORY_TAG = "previous.{alias}"  # registered-model tag: earlier holders of the alias, oldest first
HISTORY_LENGTH = 50


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


def _version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    registered_model(client, name)
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
    if _is_run_id(text) or text.startswith("starter:"):
        return text
    return str(Path(text).expanduser().resolve())


def resolve_package(spec: str | Path) -> tuple[Path, str | None]:
    """(model folder, its training run id) of a training output folder, a model folder, or an
    MLflow run id whose run logged a `model` artifact folder (downloaded)."""
    from avatar_platform.formats.model_folder import resolve_package_folder

    text = str(spec).strip()
    path = Path(text).expanduser()
    if _is_run_id(text):
        return resolve_package_folder(f"runs:/{text}/model"), text
    folder = resolve_package_folder(path)
    return folder, _training_run(path, folder)


def _stage(folder: Path, staged: Path) -> Path:
    """A copy of the model folder without pickles or temporaries: what the registry stores."""

    def skipped(_directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".") or is_pickle(n)]

    shutil.copytree(folder, staged, ignore=skipped)
    return staged


def register(spec: str | Path, name: str = MODEL_NAME, fid: float | None = None) -> ModelVersion:
    """Log a trained model as a pyfunc version of `name`, in its training run when it has one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from avatar_platform import __version__
    from avatar_platform.formats.model_folder import is_diffusion_folder, load_generator
    from avatar_platform.pipelines.inference import pyfunc

    check_name(name)
    fid = checked_fid(fid, "--fid") if fid is not None else None
    folder, run_id = resolve_package(spec)
    client = registry_client()  # before loading: an unreachable registry fails in seconds
    load_generator(folder)  # broken weights are refused here, not when serving
    fid = fid if fid is not None else model_fid(folder)
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
        with tempfile.TemporaryDirectory(prefix="avatar-register-") as tmp, warnings.catch_warnings():
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
    client = registry_client()
    aliases = registered_model(client, name).aliases or {}
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


def _history(client: MlflowClient, name: str, alias: str) -> list[int]:
    raw = registered_model(client, name).tags.get(HISTORY_TAG.format(alias=alias), "")
    return [int(v) for v in raw.split(",") if v.strip().isdigit()]


def _set_history(client: MlflowClient, name: str, alias: str, history: list[int]) -> None:
    value = ",".join(str(v) for v in history[-HISTORY_LENGTH:])
    client.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), value)


def _fid_text(fid: float | None) -> str:
    return "no FID" if fid is None else f"FID {fid:g}"


def promote(name: str, version: int | str, alias: str, force: bool = False) -> Promotion:
    """Point `alias` at `version`, unless its FID is worse than the current holder's (`force`)."""
    check_alias(alias)
    client = registry_client()
    candidate = _version(client, name, version)
    current = alias_holder(client, name, alias)
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
    client = registry_client()
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
    return Promotion(
        name, alias, int(previous.version), int(current.version), version_fid(previous), version_fid(current)
    )
