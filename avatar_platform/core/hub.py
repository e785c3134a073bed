"""Model weights named by a local folder or a Hugging Face hub id, offline-aware.

Used by every loader of pretrained weights (ControlNet backend, CLIP image encoder): a path that
does not exist, or a hub id that an offline machine has not cached, is one clear error.
"""

from __future__ import annotations

import os
from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.count("/") != 1


def model_source(source: str, what: str) -> str:
    """A local folder as an absolute path, or a hub id; a path that does not exist is an error."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if _looks_like_path(source):
        raise AvatarPlatformError(
            f"the {what} '{source}' does not exist",
            expected="a local model folder or a hub id like 'org/name'",
            fix=f"check the path given for the {what}",
        )
    if offline():
        from huggingface_hub import snapshot_download

        try:  # offline, a hub id is usable only when it is in the local cache already
            snapshot_download(source, local_files_only=True)
        except Exception:  # the hub client raises several types for "not cached"
            raise AvatarPlatformError(
                f"the {what} '{source}' is a hub id, the hub is offline (HF_HUB_OFFLINE=1) "
                "and it is not in the local cache",
                expected="a local model folder, or a hub id already downloaded",
                fix="download it where the hub is reachable (huggingface-cli download "
                f"{source} --local-dir DIR) and pass DIR",
            ) from None
    return source


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def load_pretrained(loader, source: str, what: str, **kwargs):
    try:
        return loader(source, local_files_only=offline() or None, **kwargs)
    except (OSError, ValueError) as err:
        where = "the hub is offline (HF_HUB_OFFLINE=1)" if offline() else "the hub could not serve it"
        raise AvatarPlatformError(
            f"cannot load the {what} '{source}': it is not a complete local folder and {where} "
            f"({str(err).splitlines()[0][:160]})",
            expected="a local diffusers folder, or a hub id that is cached or reachable",
            fix="download the weights once (huggingface-cli download ...) and pass the folder",
        ) from None
