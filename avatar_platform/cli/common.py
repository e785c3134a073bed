"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import sys

from avatar_platform.core.config import PRESETS

PRESET_HELP = f"named preset: {' | '.join(PRESETS)}"


def echo_err(message: str) -> None:
    """Status lines go to stderr so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def parse_choice_list(value: str | None) -> list[str] | None:
    """'a, b,c' → ['a', 'b', 'c']; None stays None."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]
