"""`avatar-platform registry` and `sample --model models:/…@champion` as a user meets them."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatar_platform.cli.app import main

pytestmark = pytest.mark.usefixtures("shared_home")  # one MLflow store for the module


@pytest.fixture(scope="module")
def home(module_home) -> Path:
    return module_home


@pytest.fixture(scope="module")
def outputs(tiny_generator, tmp_path_factory) -> dict[str, Path]:
    """Two untracked training outputs of the same generator, measured at FID 50 and 80."""
    root = tmp_path_factory.mktemp("outputs")
    for name, fid in (("good", 50.0), ("worse", 80.0)):
        shutil.copytree(tiny_generator, root / name / "model")
        (root / name / "model" / "metrics.json").write_text(json.dumps({"fid": fid}))
    return {"good": root / "good", "worse": root / "worse"}


@pytest.fixture(scope="module")
def registered(outputs, home) -> list[str]:
    """`registry register` of both outputs (versions 1 and 2): what each printed."""
    printed = []
    for name in ("good", "worse"):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["registry", "register", str(outputs[name])]) == 0
        printed.append(out.getvalue())
    return printed


def _aliases(cli) -> dict[int, list[str]]:
    code, out, err = cli("registry list --json")
    assert code == 0, err
    return {v["version"]: v["aliases"] for v in json.loads(out)}


def test_register_promote_gate_force_rollback_and_sample_the_champion(cli, registered, tmp_path):
    assert "registered styleavatar3d version 1 (generator-only, FID 50)" in registered[0]
    assert "registry promote styleavatar3d 1 --alias champion" in registered[0]
    assert "registered styleavatar3d version 2 (generator-only, FID 80)" in registered[1]

    code, out, _ = cli("registry promote styleavatar3d 1 --alias champion")
    assert code == 0 and "styleavatar3d@champion → version 1 (FID 50)" in out
    # 'latest' is the newest version (2, FID 80): the gate applies to it too
    code, _, err = cli("registry promote styleavatar3d latest --alias champion")
    assert code == 2 and "version 2 (FID 80) is worse" in err
    code, _, err = cli("registry promote styleavatar3d 2 --alias champion")
    assert code == 2
    assert "version 2 (FID 80) is worse than version 1 (FID 50)" in err and "--force" in err
    assert _aliases(cli)[1] == ["champion"]

    code, out, _ = cli("registry promote styleavatar3d 2 --alias champion --force")
    assert code == 0 and "(was version 1, FID 50)" in out
    code, out, _ = cli("registry list")
    assert code == 0
    table = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert table["2"][1:3] == ["champion", "80"] and table["1"][1:3] == ["-", "50"]

    code, out, _ = cli("registry rollback styleavatar3d --alias champion")
    assert code == 0 and "styleavatar3d@champion → version 1 (FID 50), back from version 2" in out
    assert _aliases(cli) == {2: [], 1: ["champion"]}

    samples = tmp_path / "samples"
    code, out, err = cli(
        "sample --model models:/styleavatar3d@champion --seeds 0-1 --views 2 --no-turntable --out", samples
    )
    assert code == 0, err
    assert np.asarray(Image.open(samples / "views.png")).shape == (2 * 32, 2 * 32, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["registry", "register", "{tmp}/nothing"], "is not a model"),
        (["sample", "--model", "models:/styleavatar3d@gold"], "has no alias 'gold' (aliases: "),
        (["sample", "--model", "models:/nobody@champion"], "no registered model 'nobody'"),
        (["registry", "promote", "styleavatar3d", "9", "--alias", "champion"], "has no version 9"),
        (["registry", "promote", "styleavatar3d", "1", "--alias", "v1"], "'v1' is not an alias"),
        (["registry", "rollback", "styleavatar3d", "--alias", "canary"], "has no alias 'canary'"),
        (["registry", "list", "--name", "no such"], "'no such' is not a model name"),
        (["registry", "promote", "styleavatar3d", "v2", "--alias", "champion"], "not a version"),
        (["registry", "promote", "nobody", "latest", "--alias", "champion"], "'nobody'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(cli, registered, tmp_path, argv, message):
    code, out, err = cli([a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_an_unreachable_registry_is_exit_2(cli, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    code, _, err = cli("registry list")
    assert code == 2 and "cannot reach the MLflow registry at http://127.0.0.1:9" in err
    code, _, err = cli("sample --model models:/styleavatar3d@champion")
    assert code == 2 and "cannot reach the MLflow registry" in err
