"""A small client of the served API: send seeds or a picture, download the whole result set.

Used by `avatar-platform serve request` (and the demo); standard library only.
"""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError


def _call(request: urllib.request.Request, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = err.reason
        raise AvatarPlatformError(f"the server answered {err.code}: {message}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise AvatarPlatformError(
            f"cannot reach {request.full_url} ({reason})",
            fix="start it with `avatar-platform serve --model …`, or correct the URL",
        ) from None


def wait_until_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _call(urllib.request.Request(f"{url}/healthz"), timeout=5)
            return
        except AvatarPlatformError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _multipart(picture: Path, fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    kind = mimetypes.guess_type(picture.name)[0] or "application/octet-stream"
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        f'filename="{picture.name}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
        + picture.read_bytes()
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request_avatars(
    url: str,
    out: Path,
    seeds: list[int] | None = None,
    picture: Path | None = None,
    options: dict | None = None,
    api_key: str | None = None,
    timeout: float = 300,
) -> dict:
    """POST one request, then download every file of its result set into `out` (with
    `avatars.json`); returns the result set."""
    url = url.rstrip("/")
    headers = {"X-API-Key": api_key} if api_key else {}
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if picture is not None:
        fields = {k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items()}
        body, content_type = _multipart(Path(picture), fields)
    else:
        body, content_type = json.dumps({"seeds": seeds, **options}).encode(), "application/json"
    created = urllib.request.Request(
        f"{url}/v1/avatars", data=body, method="POST", headers={**headers, "Content-Type": content_type}
    )
    result = json.loads(_call(created, timeout))
    out.mkdir(parents=True, exist_ok=True)
    root = url.split("/", 3)[:3]  # links are absolute paths on the server
    for avatar in result["avatars"]:
        links = [*avatar["views"], avatar["views_grid"], avatar["turntable"], avatar["mesh"]]
        for link in filter(None, links):
            data = _call(urllib.request.Request("/".join(root) + link, headers=headers), timeout)
            (out / link.rsplit("/", 1)[1]).write_bytes(data)
    (out / "avatars.json").write_text(json.dumps(result, indent=2))
    return result
