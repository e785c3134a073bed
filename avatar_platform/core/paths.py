"""Where the platform keeps things: the platform home (`AVATAR_HOME`, default `./.avatar`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError


def platform_home() -> Path:
    """The platform home: datasets, runs and the MLflow store live under it unless told otherwise."""
    return Path(os.environ.get("AVATAR_HOME") or ".avatar").expanduser().resolve()


def ensure_writable_dir(path: Path, what: str = "output folder") -> Path:
    """Create `path` if needed and prove it is writable, or raise one clear error."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise AvatarPlatformError(
            f"cannot write to the {what} '{path}' ({err.strerror or err})",
            expected="a folder this user can create and write",
            fix="pass another --out, or fix the folder's permissions",
        ) from None
    return path.resolve()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or the whole content (tmp + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
