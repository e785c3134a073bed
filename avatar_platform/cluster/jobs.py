"""Ray Jobs for platform commands: submit `avatar-platform <command>` to a cluster and follow it.

The CLI (`avatar_platform.cli.cluster`) builds a `JobRequest` and calls `ClusterJobs`; everything a
user can get wrong (no head at the address, an unknown job id, a missing token) becomes one
AvatarPlatformError. Ray is imported only once a cluster answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from avatar_platform.core.errors import AvatarPlatformError

if TYPE_CHECKING:
    from ray.job_submission import JobDetails

DEFAULT_ADDRESS = "http://127.0.0.1:8265"  # the dashboard of a head started on this machine
CLI_MODULE = "avatar_platform.cli.app"
# Ray's own variables for the Jobs address, in its order; RAY_ADDRESS is often the GCS address
# (host:6379) of the other commands, which the probe then reports as not a Jobs API
ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
# settings of this machine that the job should see (the cluster has its own environment)
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# gitignore-style patterns kept out of the uploaded working dir: data, outputs, environments,
# caches (Ray also honours the project's .gitignore; these hold for a copy without one)
WORKING_DIR_EXCLUDES = (
    ".git",
    ".venv",
    ".avatar",
    ".whl",
    "*.whl",
    "__pycache__",
    "*.pyc",
    ".ruff_cache",
    ".pytest_cache",
    "*.egg-info",
    "*.parquet",
    "*.safetensors",
    "mlruns",
    "mlartifacts",
    "/build",
    "/dist",
    "/test-artifacts",
)
ADDRESS_FIX = "start a head with `ray start --head` or pass --address http://<head>:8265"
TOKEN_EXPECTED = "the head's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
TOKEN_FIX = "run `ray get-auth-token` on the head and export RAY_AUTH_TOKEN=<token>"
HEAD_EXPECTED = "the Jobs API of a running Ray head: its dashboard address, port 8265 by default"


@dataclass(frozen=True)
class JobRequest:
    """One platform command to run on a cluster as a Ray Job."""

    command: tuple[str, ...]
    """`avatar-platform` arguments, e.g. ('generate', '--preset', 'tiny')."""
    python: str = "python"
    """The Python on the cluster that has the platform's dependencies."""
    working_dir: Path | None = None
    """Folder uploaded as the job's working dir (the project, so the cluster runs this code)."""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    """Environment variables set for the job."""

    @property
    def entrypoint(self) -> str:
        """The shell command the job runs."""
        return f"{shlex.quote(self.python)} -m {CLI_MODULE} {shlex.join(self.command)}"

    def runtime_env(self) -> dict:
        """Ray's runtime_env: the working dir (without data and junk) and the variables."""
        env: dict = {}
        if self.working_dir is not None:
            env["working_dir"] = str(self.working_dir)
            env["excludes"] = list(WORKING_DIR_EXCLUDES)
        if self.env_vars:
            env["env_vars"] = dict(self.env_vars)
        return env


def check_command(command: Sequence[str], known: Collection[str]) -> None:
    """Refuse what `python -m avatar_platform.cli.app` could not run as a job.

    `known` are the CLI's command and group names; `cluster` itself is refused (a job that
    submits jobs).
    """
    runnable = sorted(set(known) - {"cluster"})
    expected = f"an avatar-platform command after `--`: {' | '.join(runnable)}"
    fix = "e.g. avatar-platform cluster submit -- generate --preset tiny"
    if not command:
        raise AvatarPlatformError("no command to run", expected=expected, fix=fix)
    if command[0] == "cluster":
        raise AvatarPlatformError("a cluster job cannot run `cluster` itself", expected=expected, fix=fix)
    if command[0] not in runnable:
        raise AvatarPlatformError(
            f"'{command[0]}' is not an avatar-platform command", expected=expected, fix=fix
        )


def default_working_dir(cwd: Path | None = None) -> Path | None:
    """The project folder to upload: `cwd` when it is the platform's checkout, else none."""
    cwd = Path.cwd() if cwd is None else cwd
    if (cwd / "pyproject.toml").is_file() and (cwd / "avatar_platform").is_dir():
        return cwd.resolve()
    return None


def check_working_dir(path: Path) -> Path:
    """An explicit --working-dir must be a folder."""
    if not path.is_dir():
        raise AvatarPlatformError(
            f"working dir '{path}' is not a folder",
            expected="the project folder to upload (the one holding pyproject.toml)",
            fix="pass an existing folder to --working-dir, or leave it out",
        )
    return path.resolve()


def forwarded_env() -> dict[str, str]:
    """The variables of FORWARDED_ENV that are set here."""
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}


def resolve_address(address: str | None = None) -> tuple[str, str]:
    """The Jobs API URL and where it came from: `address`, then ADDRESS_ENV, then the local head."""
    source = "--address"
    if not address:
        source, address = next(
            ((name, os.environ[name]) for name in ADDRESS_ENV if os.environ.get(name)),
            ("default", DEFAULT_ADDRESS),
        )
    address = address.strip().rstrip("/")
    if address in ("auto", "local"):
        return DEFAULT_ADDRESS, source
    if "://" not in address:
        address = f"http://{address}"
    if address.split("://", 1)[0].lower() not in ("http", "https"):
        raise AvatarPlatformError(
            f"'{address}' (from {source}) is not a Ray Jobs API address",
            expected="the head's dashboard address, e.g. http://10.0.0.5:8265",
            fix="pass --address http://<head>:8265 (`ray start --head` prints it)",
        )
    return address, source


def probe_jobs_api(url: str, source: str = "--address", timeout: float = 5.0) -> bool:
    """Fail in seconds when no Ray dashboard answers at `url`; whether it asks for a token.

    Ray's client has no timeout of its own: an address that drops packets would hang it.
    """
    where = url if source in ("--address", "default") else f"{url} (from {source})"
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            return True
        answer = f"HTTP {err.code}"
    except (OSError, http.client.HTTPException) as err:  # refused, unknown host, timed out
        reason = getattr(err, "reason", None) or err
        reason = getattr(reason, "strerror", None) or str(reason) or type(err).__name__
        raise AvatarPlatformError(
            f"no Ray Jobs API answers at {where} ({reason})", expected=HEAD_EXPECTED, fix=ADDRESS_FIX
        ) from None
    else:
        answer = "no Ray version in it"
        with contextlib.suppress(ValueError):
            version = json.loads(body)
            if isinstance(version, dict) and version.get("ray_version"):
                return False
    raise AvatarPlatformError(
        f"{where} answers ({answer}), but not as a Ray dashboard", expected=HEAD_EXPECTED, fix=ADDRESS_FIX
    )


def _auth_token(address: str) -> str:
    """The token Ray would send: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not token and path.is_file():
        token = path.read_text().strip()
    if not token:
        raise AvatarPlatformError(
            f"the Ray cluster at {address} wants an auth token and this machine has none",
            expected=TOKEN_EXPECTED,
            fix=TOKEN_FIX,
        )
    return token


@contextlib.contextmanager
def _address_env_cleared() -> Iterator[None]:
    """Ray's client lets RAY_ADDRESS override the address it is given; an explicit one wins here."""
    saved = {name: os.environ.pop(name) for name in ADDRESS_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class ClusterJobs:
    """The Ray Jobs API of one cluster, with its failures turned into AvatarPlatformError."""

    def __init__(self, address: str | None = None, probe_timeout: float = 5.0):
        self.address, source = resolve_address(address)
        # Ray's client sends a token only with RAY_AUTH_MODE=token: send the one Ray would use
        # whenever the head asks, so a token-auth head needs no extra setting
        needs_token = probe_jobs_api(self.address, source, probe_timeout)
        headers = {"Authorization": f"Bearer {_auth_token(self.address)}"} if needs_token else None
        from ray.job_submission import JobSubmissionClient

        # Ray's INFO/WARNING lines on packaging the working dir would drown the platform's own
        for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with self._errors(), _address_env_cleared():
            self._client = JobSubmissionClient(self.address, headers=headers)

    @contextlib.contextmanager
    def _errors(self, job_id: str | None = None) -> Iterator[None]:
        import aiohttp
        import requests
        from ray.exceptions import AuthenticationError

        try:
            yield
        except AuthenticationError:
            raise AvatarPlatformError(
                f"the Ray cluster at {self.address} refused this machine's auth token",
                expected=TOKEN_EXPECTED,
                fix=TOKEN_FIX,
            ) from None
        except (ConnectionError, requests.RequestException, aiohttp.ClientError) as err:
            raise AvatarPlatformError(
                f"lost the Ray Jobs API at {self.address} ({type(err).__name__})",
                expected=HEAD_EXPECTED,
                fix=ADDRESS_FIX,
            ) from None
        except RuntimeError as err:
            text = str(err)
            if job_id is not None and "status code 404" in text:
                raise AvatarPlatformError(
                    f"no job '{job_id}' on the Ray cluster at {self.address}",
                    expected="a submission id that `avatar-platform cluster list` shows",
                    fix="copy the id from `avatar-platform cluster list`",
                ) from None
            first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
            raise AvatarPlatformError(
                f"the Ray Jobs API at {self.address} refused the request: {first}"
            ) from None

    def submit(self, request: JobRequest) -> str:
        """Submit the command (uploading the working dir) and return the submission id."""
        with self._errors():
            return self._client.submit_job(entrypoint=request.entrypoint, runtime_env=request.runtime_env())

    def info(self, job_id: str) -> JobDetails:
        """Status, message, entrypoint and times of one job."""
        with self._errors(job_id):
            return self._client.get_job_info(job_id)

    def list_jobs(self) -> list[JobDetails]:
        """Every job the cluster knows, oldest first."""
        with self._errors():
            jobs = self._client.list_jobs()
        return sorted(jobs, key=lambda job: job.start_time or 0)

    def logs(self, job_id: str) -> str:
        """The job's output so far."""
        with self._errors(job_id):
            return self._client.get_job_logs(job_id)

    def follow(self, job_id: str, write: Callable[[str], None]) -> None:
        """Pass the job's output to `write` as it comes, until the job ends."""
        # an unknown id is a clear error before the websocket opens; an ended job's stream
        # would only idle for seconds before closing
        if self.info(job_id).status.is_terminal():
            write(self.logs(job_id))
            return

        async def tail() -> None:
            async for chunk in self._client.tail_job_logs(job_id):
                write(chunk)

        with self._errors(job_id):
            asyncio.run(tail())

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; False when it had already ended."""
        with self._errors(job_id):
            return self._client.stop_job(job_id)

    def wait(self, job_id: str, on_change: Callable[[JobDetails], None], poll_s: float = 1.0) -> JobDetails:
        """Poll until the job ends, calling `on_change` on every new status; the final details."""
        last = None
        while True:
            details = self.info(job_id)
            if details.status != last:
                last = details.status
                on_change(details)
            if details.status.is_terminal():
                return details
            time.sleep(poll_s)
