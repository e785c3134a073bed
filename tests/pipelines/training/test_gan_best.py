"""gan.keep_best: OUT/best/ holds the lowest-FID weights so far, whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avatar_platform.formats.model_folder import read_metrics
from avatar_platform.pipelines.training.gan.loop import BestModel


def fake_save(tag: str):
    def save(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "generator_ema.json").write_text(json.dumps({"tag": tag}))

    return save


def tag(folder: Path) -> str:
    return json.loads((folder / "generator_ema.json").read_text())["tag"]


def test_only_an_improving_fid_replaces_the_best(tmp_path):
    best = BestModel(str(tmp_path), enabled=True)
    assert best.offer({"fid": 5.0, "kid": 0.3}, 200, fake_save("a"))
    assert not best.offer({"fid": 7.0, "kid": 0.1}, 400, fake_save("b"))
    assert best.offer({"fid": 2.5, "kid": 0.2}, 600, fake_save("c"))
    folder = tmp_path / "best"
    assert tag(folder) == "c"
    assert read_metrics(folder) == {"fid": 2.5, "kid": 0.2, "step": 600}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no staging left behind


def test_a_resumed_run_keeps_the_stopped_runs_best(tmp_path):
    BestModel(str(tmp_path), enabled=True).offer({"fid": 3.0, "kid": 0.0}, 200, fake_save("old"))
    resumed = BestModel(str(tmp_path), enabled=True)
    assert resumed.fid == 3.0
    assert not resumed.offer({"fid": 4.0, "kid": 0.0}, 400, fake_save("worse"))
    assert tag(tmp_path / "best") == "old"


def test_a_failed_save_leaves_the_old_best_whole(tmp_path):
    best = BestModel(str(tmp_path), enabled=True)
    best.offer({"fid": 3.0, "kid": 0.0}, 200, fake_save("old"))

    def broken(folder: Path) -> None:
        folder.mkdir(parents=True)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        best.offer({"fid": 1.0, "kid": 0.0}, 400, broken)
    assert tag(tmp_path / "best") == "old" and read_metrics(tmp_path / "best")["step"] == 200


def test_off_or_without_an_output_folder_writes_nothing(tmp_path):
    assert not BestModel(str(tmp_path), enabled=False).offer({"fid": 1.0}, 1, fake_save("x"))
    assert not BestModel(None, enabled=True).offer({"fid": 1.0}, 1, fake_save("x"))
    assert list(tmp_path.iterdir()) == []
