"""Starter models (`starter:<name>`): a shipped GAN any `--model` / `--init` / `--generator`
accepts, refused when its files do not match its card; and the shipped `starter:demo` itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_platform import starters
from avatar_platform.cli.app import main
from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.formats.model_folder import load_generator
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig, with_dataset_masks
from avatar_platform.pipelines.training.gan.init import check_init
from avatar_platform.pipelines.training.gan.trainer import GanTrainer
from avatar_platform.starters.build import build_starter, render_markdown

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")
CARD = {"commands": ["avatar-platform train gan --preset tiny ..."], "training": {"steps": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny GAN after one step, saved as `train gan` saves it (with its pickled state)."""
    trainer = GanTrainer(TINY.model_copy(update={"seed": 3}))
    size = TINY.generator.img_resolution
    cams = np.stack([camera_from_angles(y, 0.0, CameraConfig()) for y in (0.0, 90.0)])
    trainer.train_step(
        {
            "image": torch.full((2, 3, size, size), 128, dtype=torch.uint8),
            "yaw": torch.tensor([0.0, 90.0]),
            "pitch": torch.zeros(2),
            "camera": torch.tensor(cams).float(),
        }
    )
    folder = tmp_path_factory.mktemp("trained")
    trainer.save(folder)
    return folder


@pytest.fixture
def shelf(tmp_path, monkeypatch, trained) -> Path:
    """A starters folder of its own holding `starter:mini` built from `trained`."""
    root = tmp_path / "starters"
    root.mkdir()
    monkeypatch.setattr(starters, "STARTERS_DIR", root)
    build_starter("mini", trained, CARD, root=root)
    return root


def test_a_starter_holds_no_pickles_and_loads_as_the_model_it_was_built_from(shelf, trained):
    folder = starters.resolve("starter:mini")
    assert not list(folder.glob("*.pt")) and (trained / "training_state.pt").is_file()
    card = json.loads((shelf / "mini" / "card.json").read_text())
    assert set(card["files"]) == {p.name for p in folder.iterdir()}
    assert (
        card["commands"] == CARD["commands"]
        and "starter:mini" in (shelf / "mini" / "MODEL_CARD.md").read_text()
    )
    ours, theirs = load_generator("starter:mini"), load_generator(trained)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert check_init("starter:mini", TINY) == folder  # --init takes it


@pytest.mark.parametrize("damage", ["changed", "missing", "extra"])
def test_a_starter_whose_files_do_not_match_its_card_is_refused(shelf, damage):
    model = shelf / "mini" / "model"
    if damage == "changed":
        data = bytearray((model / "generator_ema.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (model / "generator_ema.safetensors").write_bytes(bytes(data))
    elif damage == "missing":
        (model / "discriminator.safetensors").unlink()
    else:
        (model / "notes.txt").write_text("mine")
    with pytest.raises(AvatarPlatformError) as err:
        starters.resolve("starter:mini")
    named = {
        "changed": "generator_ema.safetensors has sha256",
        "missing": "discriminator.safetensors is missing",
        "extra": "notes.txt is not in the card",
    }
    assert named[damage] in err.value.message and "reinstall" in err.value.message


def test_an_unknown_starter_names_the_ones_there_are(shelf, capsys, tmp_path):
    with pytest.raises(AvatarPlatformError, match="expected one of: starter:mini"):
        starters.resolve("starter:nope")
    code = main(["sample", "--model", "starter:nope", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no starter model 'starter:nope'" in err and not (tmp_path / "o").exists()


def test_sample_and_train_init_accept_a_starter_by_name(shelf, capsys, tmp_path):
    code = main(
        [
            "sample",
            "--model",
            "starter:mini",
            "--seeds",
            "0",
            "--views",
            "2",
            "--frames",
            "2",
            "--out",
            str(tmp_path / "samples"),
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert (tmp_path / "samples" / "views.png").stat().st_size > 0
    code = main(
        ["train", "gan", "--preset", "tiny", "--data", str(tmp_path), "--init", "starter:mini", "--dry-run"]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["init"] == "starter:mini"


def test_the_card_marks_a_metric_a_model_was_not_measured_on():
    # an older model's numbers come from before view accuracy existed: its cell says so
    metrics = {"new": {"fid": 1.25, "view_accuracy": 0.5}, "old": {"fid": 2.5}}
    text = render_markdown({"name": "mini", "files": {}, "metrics": metrics})
    assert "| fid | 1.25 | 2.5 |" in text
    assert "| view_accuracy | 0.5 | — |" in text
    assert "geometry" not in text  # measured on neither: no row


def test_a_build_that_cannot_finish_leaves_the_old_starter(shelf, tmp_path, trained, monkeypatch):
    before = (shelf / "mini" / "card.json").read_text()
    with pytest.raises(AvatarPlatformError, match="lacks generator.json"):
        build_starter("mini", tmp_path, CARD, root=shelf)  # not a model folder

    def disk_error(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("avatar_platform.starters.build.file_sha256", disk_error)
    with pytest.raises(OSError):
        build_starter("mini", trained, {**CARD, "commands": ["another"]}, root=shelf)
    assert (shelf / "mini" / "card.json").read_text() == before
    assert starters.available() == ["mini"]  # the half-built copy is not a starter
    starters.resolve("starter:mini")


# the shipped starter: what a user of an installed platform gets
SHIPPED_CARD = starters.STARTERS_DIR / "demo" / "card.json"


def test_the_shipped_demo_starter_matches_its_card_and_the_demo_preset():
    folder = starters.resolve("starter:demo")
    card = json.loads(SHIPPED_CARD.read_text())
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 25 * 2**20
    assert not [p for p in folder.iterdir() if p.suffix in (".pt", ".pkl", ".pth", ".bin")]
    assert any(c.startswith("avatar-platform generate") for c in card["commands"])
    assert any(c.startswith("avatar-platform train gan") for c in card["commands"])
    assert card["dataset"]["config_hash"] and card["training"]["wall_time_s"] > 0
    assert card["training"]["steps"] >= 1000 and card["training"]["hardware"]
    for key in ("fid", "kid", "geometry", "silhouette_iou"):
        assert isinstance(card["metrics"]["starter"][key], float), key
    # `make demo` fine-tunes it with the demo preset on a dataset with masks: the architectures agree
    demo = with_dataset_masks(resolve_config(GanTrainingConfig, "gan", "demo"), has_masks=True)
    check_init("starter:demo", demo)
    assert load_generator("starter:demo").config.img_resolution == demo.generator.img_resolution


def test_the_shipped_starters_sampled_avatars_stand_before_its_datas_backdrops():
    """What `sample`, `serve`, the view grids and the meshes show is the identity of `ws_for`:
    its backdrops have the demo styles' brightness (the front-conditioned identity of the same
    seeds painted them at about half of it: 0.32 against 0.62)."""
    from avatar_platform.pipelines.datagen.config import GenerateConfig
    from avatar_platform.pipelines.evaluation.colour import result_colours
    from avatar_platform.pipelines.prompts.prompts import style_catalog
    from avatar_platform.pipelines.rendering import GRID_YAWS, cameras, ws_for

    styles = resolve_config(GenerateConfig, "generate", "demo").styles
    backdrops = [style_catalog()[name].procedural["background"].lstrip("#") for name in styles]
    truth = np.mean([[int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] for h in backdrops])
    generator = load_generator("starter:demo").eval()
    z = torch.randn(32, generator.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = ws_for(generator, z, 0.7)
        colours = np.concatenate(
            [
                result_colours(generator.synthesis(ws, c.expand(len(z), -1).float()))
                for c in cameras(GRID_YAWS)
            ]
        )
    assert abs(colours[:, 3:].mean() - truth) < 0.1, (colours[:, 3:].mean(), truth)
