"""Starter models shipped inside the package: `starter:<name>` wherever a model is accepted
(`--model`, `--init`, `--generator`, `serve --model`, `registry register`).

A starter is a folder `avatar_platform/starters/<name>/` holding `model/` (a GAN model folder:
G, G_ema and D as safetensors + json, and config.json; no pickles) and `card.json`: how it was
made (the commands, the dataset's config hash, steps, hardware, wall time), what it scores
(`bench/fidelity.py`), and the sha256 of every file in `model/`, checked each time the starter is
resolved. `MODEL_CARD.md` is the same card for people (`python -m avatar_platform.starters.build` writes
both).
"""

from __future__ import annotations

import json
from pathlib import Path

from avatar_platform.core.errors import AvatarPlatformError

SCHEME = "starter:"
STARTERS_DIR = Path(__file__).resolve().parent
CARD_FORMAT_VERSION = 1


def is_starter(spec: str | Path) -> bool:
    return str(spec).startswith(SCHEME)


def available() -> list[str]:
    """The starters this installation ships (folders with a card)."""
    return sorted(
        p.name for p in STARTERS_DIR.iterdir() if not p.name.startswith(".") and (p / "card.json").is_file()
    )


def read_card(name: str) -> dict:
    """The card of starter `name`, or one error listing the starters there are."""
    card_file = STARTERS_DIR / name / "card.json"
    if not name or name.startswith(".") or "/" in name or not card_file.is_file():
        names = ", ".join(f"{SCHEME}{n}" for n in available()) or "none"
        raise AvatarPlatformError(
            f"there is no starter model '{SCHEME}{name}'",
            expected=f"one of: {names}",
            fix="pick one of those, or pass a model folder or an MLflow URI",
        )
    try:
        card = json.loads(card_file.read_text())
        version, files = card["format_version"], card["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise AvatarPlatformError(
            f"the card of '{SCHEME}{name}' ({card_file}) is damaged ({type(err).__name__}: {err})",
            fix="reinstall avatar-platform",
        ) from None
    if version != CARD_FORMAT_VERSION or not isinstance(files, dict) or not files:
        raise AvatarPlatformError(
            f"the card of '{SCHEME}{name}' has format_version {version!r} and "
            f"{len(files) if isinstance(files, dict) else 0} file hashes",
            expected=f"format_version {CARD_FORMAT_VERSION} with the sha256 of every model file",
            fix="use the avatar-platform release that shipped it, or reinstall",
        )
    return card


def resolve(spec: str | Path) -> Path:
    """The model folder of `starter:<name>`, after checking every file against its card: a file
    that is missing, extra or changed is refused with the file named."""
    from avatar_platform.core.digest import file_sha256

    name = str(spec)[len(SCHEME) :]
    card = read_card(name)
    folder = STARTERS_DIR / name / "model"
    present = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    problems = [f"{f} is missing" for f in sorted(set(card["files"]) - present)]
    problems += [f"{f} is not in the card" for f in sorted(present - set(card["files"]))]
    problems += [
        f"{f} has sha256 {digest[:12]}…, the card says {card['files'][f][:12]}…"
        for f in sorted(present & set(card["files"]))
        if (digest := file_sha256(folder / f)) != card["files"][f]
    ]
    if problems:
        raise AvatarPlatformError(
            f"the starter '{spec}' does not match its card ({folder}): {'; '.join(problems)}",
            expected="the files exactly as shipped (card.json holds their sha256)",
            fix="reinstall avatar-platform (pip install --force-reinstall), or restore the files",
        )
    return folder
