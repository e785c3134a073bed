"""Where the platform keeps things: the platform home (`AVATAR_HOME`, default `./.avatar`)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError


def platform_home() -> Path:
    """The platform home: datasets, runs and the MLflow store live under it unless told otherwise."""
    return Path(os.environ.get("AVATAR_HOME") or ".avatar").expanduser().resolve()


# `runs:/…`, `models:/…`, `s3://…`: a URI, not a path on this machine
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


def user_path(path: str | Path) -> Path:
    """A path as the user typed it, made absolute against the driver's working folder (and `~`
    expanded), once, on the driver: Ray workers and tasks run in other folders, so a relative
    path must never reach them."""
    return Path(path).expanduser().resolve()


def user_path_or_none(path: str | Path | None) -> Path | None:
    return None if path is None else user_path(path)


def user_model_spec(spec: str | Path) -> str:
    """A `--model` / `--generator` / `--init` value: a URI (MLflow's `runs:/`, `models:/`, …) or
    a shipped starter (`starter:demo`) as given, a local path made absolute (`user_path`)."""
    text = str(spec)
    return text if _URI.match(text) or text.startswith("starter:") else str(user_path(text))


def user_source(source: str | None) -> str | None:
    """A `--sd-model`-like value (a local folder or a hub id): an existing local path made
    absolute (`user_path`), anything else (a hub id, None) as given."""
    if source is None or _URI.match(source) or not Path(source).expanduser().exists():
        return source
    return str(user_path(source))


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


@contextmanager
def removed_if_failed(path: Path) -> Iterator[None]:
    """A folder that the block creates is removed again, with what the block put in it, when
    the block fails (e.g. `--out` made before Ray turned out to be unreachable); a folder that
    existed before is left alone."""
    path = Path(path).expanduser().absolute()
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or the whole content (tmp + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
