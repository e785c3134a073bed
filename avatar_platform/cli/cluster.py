"""`avatar-platform cluster`: run platform commands on a Ray cluster as Ray Jobs, follow them.

Thin: each command calls `avatar_platform.cluster.jobs` and prints plain lines; the job id goes
to stdout, progress to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from avatar_platform.cli.common import echo_err

app = typer.Typer(
    help="Run platform commands on a Ray cluster as Ray Jobs: submit, status, logs, stop, list.",
    no_args_is_help=True,
)

ADDRESS = typer.Option(
    None,
    help="the head's Jobs API (dashboard) address (or RAY_API_SERVER_ADDRESS / RAY_ADDRESS); "
    "default http://127.0.0.1:8265",
)
JOB_ID = typer.Argument(..., metavar="ID", help="submission id (see `avatar-platform cluster list`)")
INTERRUPTED = 130
LOG_TAIL_LINES = 10  # of a failed job's log, shown by `submit`


def _when(millis: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(millis / 1000)) if millis else "-"


def _command_names() -> list[str]:
    """The CLI's commands and groups, read from the app so new ones count at once."""
    import typer.main

    from avatar_platform.cli.app import app as root  # lazily: app.py imports this module

    return list(typer.main.get_command(root).commands)


def _detached(job_id: str) -> typer.Exit:
    """Ctrl-C stops the waiting, not the job: say how to get back to it."""
    echo_err(f"stopped waiting; job {job_id} goes on on the cluster")
    echo_err(f"follow   avatar-platform cluster logs {job_id} --follow")
    echo_err(f"stop     avatar-platform cluster stop {job_id}")
    return typer.Exit(INTERRUPTED)


@app.command(
    # a command's own options follow the first word untouched, `--` or not
    context_settings={"allow_interspersed_args": False}
)
def submit(
    command: list[str] | None = typer.Argument(
        None,
        metavar="-- COMMAND ARGS",
        help="the avatar-platform command to run; its paths are read on the cluster, relative to "
        "the job's copy of the working dir (use absolute paths on shared storage)",
    ),
    address: str | None = ADDRESS,
    python: str = typer.Option(
        "python", help="the cluster's Python with the platform's dependencies installed"
    ),
    working_dir: Path | None = typer.Option(
        None,
        help="project folder uploaded as the job's working dir (default: the current folder "
        "when it is the platform's checkout)",
    ),
    wait: bool = typer.Option(True, help="wait for the job to end, printing its status changes"),
) -> None:
    """Run an avatar-platform command on the cluster as a Ray Job."""
    from avatar_platform.cluster import jobs

    args = tuple(command or ())
    jobs.check_command(args, _command_names())
    folder = jobs.check_working_dir(working_dir) if working_dir else jobs.default_working_dir()
    request = jobs.JobRequest(command=args, python=python, working_dir=folder, env_vars=jobs.forwarded_env())
    cluster = jobs.ClusterJobs(address)
    uploading = f", uploading {folder}" if folder else ""
    echo_err(f"submitting to {cluster.address}{uploading}: {request.entrypoint}")
    try:
        job_id = cluster.submit(request)
    except KeyboardInterrupt:
        echo_err("interrupted before the cluster answered: see `avatar-platform cluster list`")
        raise typer.Exit(INTERRUPTED) from None
    typer.echo(job_id)
    echo_err(f"follow   avatar-platform cluster logs {job_id} --follow")
    if not wait:
        return
    try:
        final = cluster.wait(job_id, lambda job: echo_err(f"{job_id}: {job.status}"))
    except KeyboardInterrupt:
        raise _detached(job_id) from None
    if str(final.status) != "SUCCEEDED":
        # Ray's message repeats the whole log tail: its first line, then the log's last lines
        reason = (final.message or "no message").strip().splitlines()[0]
        reason = reason.split(", last available logs", 1)[0]
        echo_err(f"{job_id} ended {final.status}: {reason}")
        tail = cluster.logs(job_id).rstrip().splitlines()[-LOG_TAIL_LINES:]
        echo_err("\n".join(f"  | {line}" for line in tail))
        echo_err(f"logs     avatar-platform cluster logs {job_id}")
        raise typer.Exit(1)


@app.command()
def status(job_id: str = JOB_ID, address: str | None = ADDRESS) -> None:
    """A job's status, message, command and times."""
    from avatar_platform.cluster.jobs import ClusterJobs

    job = ClusterJobs(address).info(job_id)
    typer.echo(f"job        {job.submission_id or job.job_id}")
    typer.echo(f"status     {job.status}")
    typer.echo(f"message    {job.message or '-'}")
    typer.echo(f"entrypoint {job.entrypoint}")
    typer.echo(f"started    {_when(job.start_time)}")
    typer.echo(f"ended      {_when(job.end_time)}")


@app.command()
def logs(
    job_id: str = JOB_ID,
    address: str | None = ADDRESS,
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the job ends"),
) -> None:
    """A job's output (stdout and stderr of the command)."""
    from avatar_platform.cluster.jobs import ClusterJobs

    cluster = ClusterJobs(address)
    if not follow:
        typer.echo(cluster.logs(job_id), nl=False)
        return

    def write(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    try:
        cluster.follow(job_id, write)
    except KeyboardInterrupt:
        raise _detached(job_id) from None


@app.command()
def stop(job_id: str = JOB_ID, address: str | None = ADDRESS) -> None:
    """Stop a running job."""
    from avatar_platform.cluster.jobs import ClusterJobs

    cluster = ClusterJobs(address)
    if cluster.stop(job_id):
        echo_err(f"stopping {job_id}")
    else:
        echo_err(f"{job_id} had already ended ({cluster.info(job_id).status})")


@app.command(name="list")
def list_(address: str | None = ADDRESS) -> None:
    """Every job of the cluster, oldest first."""
    from avatar_platform.cluster.jobs import ClusterJobs

    found = ClusterJobs(address).list_jobs()
    typer.echo(f"{'id':<28} {'status':<10} {'started':<19}  entrypoint")
    for job in found:
        typer.echo(
            f"{job.submission_id or job.job_id or '-':<28} {job.status!s:<10} "
            f"{_when(job.start_time):<19}  {job.entrypoint}"
        )
