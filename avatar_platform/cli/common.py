"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import sys

import typer

from avatar_platform.core.config import PRESETS

PRESET_HELP = f"named preset: {' | '.join(PRESETS)}"

# options every `train` command takes (typer reads these defaults; sharing them is safe)
WORKERS = typer.Option(None, help="Ray Train workers (one GPU each on GPUs)")
RESUME = typer.Option(False, help="continue the stopped run in --out")
RAY_ADDRESS = typer.Option(None, help="join this Ray cluster (or RAY_ADDRESS)")
GPUS = typer.Option(
    None,
    help="auto (GPUs when the cluster has them) | required (wait --gpu-wait s for them, never the "
    "CPU) | none",
)
GPU_WAIT = typer.Option(None, help="seconds --gpus required waits for GPU nodes (default 300)")
TRACK = typer.Option(True, help="record the run in MLflow")
DRY_RUN = typer.Option(False, "--dry-run", help="print the resolved config and exit")


def echo_err(message: str) -> None:
    """Status lines go to stderr so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def parse_choice_list(value: str | None) -> list[str] | None:
    """'a, b,c' → ['a', 'b', 'c']; None stays None."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]
