"""Result sets of served requests on disk: one folder per id, written whole or not at all.

A set is written into a hidden `.partial` folder and renamed into place, so `GET` never sees a
half-written set; ids and file names are checked against fixed patterns before any path is built.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

from avatar_platform.serve.avatars import RenderedAvatar

RESULT_ID = re.compile(r"[0-9a-f]{32}")
RESULT_FILE = re.compile(r"avatar\d{1,4}-(views|view\d{1,3}|turntable|mesh)\.(png|gif|glb)")
MEDIA_TYPES = {"png": "image/png", "gif": "image/gif", "glb": "model/gltf-binary"}
MANIFEST = "avatars.json"


def avatar_files(index: int, avatar: RenderedAvatar) -> dict[str, bytes]:
    """File name → bytes of one avatar of a set (names match RESULT_FILE)."""
    files = {f"avatar{index}-view{v}.png": png for v, png in enumerate(avatar.views)}
    files[f"avatar{index}-views.png"] = avatar.views_grid
    if avatar.turntable is not None:
        files[f"avatar{index}-turntable.gif"] = avatar.turntable
    if avatar.mesh is not None:
        files[f"avatar{index}-mesh.glb"] = avatar.mesh
    return files


class ResultStore:
    """The result sets under `root`: at most `keep` of them and `max_bytes` of their files (the
    oldest go first; the newest set is kept even if it alone is over the budget)."""

    def __init__(self, root: Path, keep: int, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.keep = keep
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        # sets are never changed once renamed into place, so a size measured once stays true;
        # sets that other replicas write into the same folder are measured when first seen
        self._sizes: dict[str, int] = {}

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(self, result_id: str, files: dict[str, bytes], manifest: dict) -> None:
        assert RESULT_ID.fullmatch(result_id), result_id
        partial = self.root / f".{result_id}.partial"
        partial.mkdir()
        try:
            for name, data in files.items():
                assert RESULT_FILE.fullmatch(name), name
                (partial / name).write_bytes(data)
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
            partial.rename(self.root / result_id)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self._prune(result_id)

    def manifest(self, result_id: str) -> dict | None:
        """The stored set, or None for an unknown or malformed id."""
        if not RESULT_ID.fullmatch(result_id):
            return None
        path = self.root / result_id / MANIFEST
        return json.loads(path.read_text()) if path.is_file() else None

    def file(self, result_id: str, name: str) -> Path | None:
        """A stored file, or None; only names of the fixed patterns ever reach the disk."""
        if not (RESULT_ID.fullmatch(result_id) and RESULT_FILE.fullmatch(name)):
            return None
        path = self.root / result_id / name
        return path if path.is_file() else None

    def _size(self, folder: Path) -> int:
        size = self._sizes.get(folder.name)
        if size is None:
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            self._sizes[folder.name] = size
        return size

    def _prune(self, saved: str) -> None:
        sets = []
        for folder in self.root.iterdir():
            if not (folder.is_dir() and RESULT_ID.fullmatch(folder.name)):
                continue
            try:  # another replica may be deleting it meanwhile
                sets.append((folder.stat().st_mtime, folder.name, self._size(folder), folder))
            except FileNotFoundError:
                continue
        sets.sort()  # oldest first
        remaining, total = len(sets), sum(size for _, _, size, _ in sets)
        for _, name, size, folder in sets[:-1]:  # the newest set is never deleted
            if remaining <= self.keep and (self.max_bytes is None or total <= self.max_bytes):
                break
            if name == saved:  # nor the one just saved (its links are being returned)
                continue
            shutil.rmtree(folder, ignore_errors=True)
            remaining, total = remaining - 1, total - size
        present = {p.name for p in self.root.iterdir()}
        self._sizes = {k: v for k, v in self._sizes.items() if k in present}
