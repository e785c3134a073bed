"""`avatar-platform cluster` against a real Ray head of its own: submit, follow, stop, bad input.

The head runs in its own process group, on free ports, with its own temp dir (so an address-less
`ray.init()` of other tests cannot find it), and is stopped by killing that group: `ray stop`
would stop every Ray of this user, the test session's too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from avatar_platform.cluster.jobs import WORKING_DIR_EXCLUDES, JobRequest

PROJECT = Path(__file__).resolve().parents[2]
HEAD_START_TIMEOUT_S = 90
# `cluster submit`'s flags that run a job with this interpreter on this checkout
THIS_PROJECT = ["--python", sys.executable, "--working-dir", PROJECT]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _jobs_api_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/jobs/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _session_members(session: int) -> list[int]:
    """Processes of a session: Ray gives each worker its own process group, but not its own session."""
    members = []
    for name in os.listdir("/proc"):
        with contextlib.suppress(ValueError, OSError):
            if os.getsid(int(name)) == session:
                members.append(int(name))
    return members


def _stop_head(process: subprocess.Popen) -> None:
    """SIGTERM the head's group, then SIGKILL what is left of its session (a graceful
    `ray start --block` takes ~30 s to wind down)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    for pid in _session_members(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def head() -> str:
    """A local Ray head with the Jobs API; yields its address (http://127.0.0.1:<port>)."""
    # short: Ray's socket paths under it must stay within the 107 characters of a Unix socket
    temp_dir = Path(tempfile.mkdtemp(prefix="rayh-", dir="/tmp"))
    dashboard = _free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "AVATAR_HOME": str(temp_dir / "avatar-home"),
    }
    env.pop("RAY_ADDRESS", None)
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={_free_port()}",
        f"--dashboard-port={dashboard}",
        "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        # more logical CPUs than cores: the job's actor must not starve its read tasks
        "--num-cpus=4",
        "--include-dashboard=true",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    log = temp_dir / "head.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while not _jobs_api_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _stop_head(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def generated(head, tmp_path_factory, cli) -> dict:
    """A tiny `generate` run submitted to the head and waited for."""
    out = tmp_path_factory.mktemp("cluster-generate") / "data"
    code, stdout, stderr = cli(
        "cluster submit --address",
        head,
        THIS_PROJECT,
        "-- generate --preset tiny --num-images 4 --no-track --no-preview --out",
        out,
    )
    return {"code": code, "job_id": stdout.strip(), "stderr": stderr, "out": out}


def test_submit_runs_a_platform_command_on_the_cluster(generated):
    assert generated["code"] == 0, generated["stderr"]
    job_id = generated["job_id"]
    assert job_id.startswith("raysubmit_")
    assert f"cluster logs {job_id} --follow" in generated["stderr"]
    assert f"{job_id}: SUCCEEDED" in generated["stderr"]
    card = json.loads((generated["out"] / "dataset.json").read_text())
    assert card  # the job wrote its dataset where the command said


def test_status_logs_and_list_show_the_job(head, generated, cli):
    job_id = generated["job_id"]
    code, out, err = cli("cluster status", job_id, "--address", head)
    assert code == 0, err
    assert "SUCCEEDED" in out and "-m avatar_platform.cli.app generate" in out

    code, out, err = cli("cluster logs", job_id, "--address", head)
    assert code == 0, err
    assert "generating 4 images" in out

    code, out, err = cli("cluster logs", job_id, "--follow --address", head)
    assert code == 0, err
    assert "generating 4 images" in out  # an ended job's whole log, then the stream closes

    code, out, err = cli("cluster list --address", head)
    assert code == 0, err
    assert any(job_id in line and "SUCCEEDED" in line for line in out.splitlines())


def test_a_failing_command_makes_submit_exit_non_zero(head, tmp_path, cli):
    code, out, err = cli(
        "cluster submit --address", head, THIS_PROJECT, "-- dataset info", tmp_path / "missing"
    )
    assert code == 1
    job_id = out.strip()
    assert f"{job_id} ended FAILED" in err
    _, logs, _ = cli("cluster logs", job_id, "--address", head)
    assert "does not exist" in logs  # the command's own error reached the job's log


def test_stop_ends_a_long_job_stopped_and_ends_its_followers(head, tmp_path, cli):
    code, out, err = cli(
        "cluster submit --no-wait --address",
        head,
        THIS_PROJECT,
        "-- generate --preset tiny --num-images 100000 --no-track --out",
        tmp_path / "data",
    )
    assert code == 0, err
    job_id = out.strip()
    deadline = time.monotonic() + 60
    while "RUNNING" not in cli("cluster status", job_id, "--address", head)[1]:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "avatar_platform.cli.app",
            "cluster",
            "logs",
            job_id,
            "--follow",
            "--address",
            head,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # let it connect: it must end with the job, not before
        assert follower.poll() is None

        code, _, err = cli("cluster stop", job_id, "--address", head)
        assert code == 0 and f"stopping {job_id}" in err
        deadline = time.monotonic() + 30
        while "STOPPED" not in (status := cli("cluster status", job_id, "--address", head)[1]):
            assert "RUNNING" in status and time.monotonic() < deadline, status
            time.sleep(0.5)
        followed, follow_err = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, follow_err
    assert "generating 100000 images" in followed


def test_an_explicit_address_wins_over_ray_address(head, monkeypatch, cli):
    monkeypatch.setenv("RAY_ADDRESS", f"http://127.0.0.1:{_free_port()}")
    assert cli("cluster list --address", head)[0] == 0
    monkeypatch.setenv("RAY_ADDRESS", head)
    assert cli("cluster list")[0] == 0


def test_an_unknown_job_id_is_a_clear_error(head, cli):
    for argv in (["status", "raysubmit_nosuchjob"], ["logs", "raysubmit_nosuchjob", "--follow"]):
        code, _, err = cli("cluster", argv, "--address", head)
        assert code == 2
        assert err.startswith("error: no job 'raysubmit_nosuchjob'") and "cluster list" in err


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (a head that hangs)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_an_unreachable_address_fails_in_seconds(kind, request, cli):
    address = (
        f"http://127.0.0.1:{_free_port()}" if kind == "refused" else request.getfixturevalue("silent_server")
    )
    started = time.monotonic()
    code, out, err = cli("cluster submit --address", address, "-- styles")
    assert code == 2 and out == ""
    assert time.monotonic() - started < 10
    assert err.count("\n") == 1 and err.startswith(f"error: no Ray Jobs API answers at {address}")
    assert "ray start --head" in err


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ([], "no command to run"),
        (["cluster", "list"], "a cluster job cannot run `cluster` itself"),
        (["bogus"], "'bogus' is not an avatar-platform command"),
        (["--version"], "'--version' is not an avatar-platform command"),
    ],
)
def test_a_command_that_is_not_a_platform_command_is_refused(command, message, cli):
    code, out, err = cli("cluster submit --address http://127.0.0.1:1 --", command)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {message}") and "generate" in err


def test_the_entrypoint_quotes_the_command_and_the_upload_leaves_out_data(tmp_path):
    request = JobRequest(
        command=("generate", "--out", str(tmp_path / "a folder")),
        python="/opt/my python/bin/python",
        working_dir=PROJECT,
        env_vars={"HF_HUB_OFFLINE": "1"},
    )
    assert shlex.split(request.entrypoint) == [
        "/opt/my python/bin/python",
        "-m",
        "avatar_platform.cli.app",
        "generate",
        "--out",
        str(tmp_path / "a folder"),
    ]
    env = request.runtime_env()
    assert env["working_dir"] == str(PROJECT) and env["env_vars"] == {"HF_HUB_OFFLINE": "1"}
    assert {".git", ".venv", ".avatar", "*.parquet"} <= set(WORKING_DIR_EXCLUDES)
    assert JobRequest(command=("styles",)).runtime_env() == {}
