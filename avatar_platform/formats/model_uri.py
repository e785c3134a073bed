"""Where a registered model is: MLflow addressing shared by loading, the registry and serving.

`models:/<name>@<alias>` and `models:/<name>/<version>` parsed, an alias pinned to the version it
names now (what is loaded is what is reported), the registry reached in seconds or one clear
error. `pipelines/inference/registry.py` manages versions and aliases on top of this; model
loading (`formats/model_folder.py`) only needs this, so neither imports the other.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import configure_mlflow, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

EXPERIMENT = "registry"
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ALIAS_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")
REACH_TIMEOUT_S = 3.0


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
            fix="start the server, correct MLFLOW_TRACKING_URI, or unset it to use the local store under AVATAR_HOME",
        ) from None


def registry_client() -> MlflowClient:
    check_reachable()
    # configure_mlflow before the first client: it quiets MLflow's logs (the store's set-up)
    return configure_mlflow(EXPERIMENT).MlflowClient()


def check_name(name: str) -> None:
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise AvatarPlatformError(
            f"'{name}' is not a model name", expected="letters, digits, '_', '.' and '-' (e.g. styleavatar3d)"
        )


def check_alias(alias: str) -> None:
    if not ALIAS_PATTERN.fullmatch(alias) or alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise AvatarPlatformError(
            f"'{alias}' is not an alias",
            expected="letters, digits, '_' and '-', not 'latest' nor v<number> (e.g. champion)",
        )


def registered_model(client: MlflowClient, name: str):
    from mlflow.exceptions import MlflowException

    check_name(name)
    try:
        return client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise AvatarPlatformError(
            f"no registered model '{name}' at {tracking_uri()}",
            expected=f"one of {names}" if names else "a registered model",
            fix="register one with `avatar-platform registry register <training output>`",
        ) from None


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
    check_alias(alias)
    client = registry_client()
    holder = alias_holder(client, name, alias)
    if holder is None:
        aliases = registered_model(client, name).aliases or {}
        existing = ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items())) or "none yet"
        raise AvatarPlatformError(
            f"'{name}' has no alias '{alias}' (aliases: {existing})",
            fix=f"promote a version first: avatar-platform registry promote {name} <version> --alias {alias}",
        )
    return holder


def alias_holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    aliases = registered_model(client, name).aliases or {}
    return client.get_model_version(name, str(aliases[alias])) if alias in aliases else None
