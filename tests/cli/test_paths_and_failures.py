"""Relative paths work for every command (Ray's workers run in other folders), a failed training
run says why, stops at once when a restart cannot help and ends its MLflow run FAILED, and a
failed command leaves no folder behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from avatar_platform.core.config import resolve_config
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.tracking import point_mlflow
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.trainer import GanTrainer

pytestmark = pytest.mark.usefixtures("shared_home")  # runs and checks share one MLflow store


def _mlflow_status(out: Path) -> str:
    import json

    run_id = json.loads((out / "run.json").read_text())["run_id"]
    point_mlflow()
    return mlflow.MlflowClient().get_run(run_id).info.status


def test_every_command_takes_relative_paths(cli, ray_session, tmp_path, monkeypatch):
    """generate → train gan → sample → train diffusion, each with paths relative to the
    working folder (Ray's tasks and workers run in other folders)."""
    monkeypatch.chdir(tmp_path)
    writes = {  # each command, in order, and a file it must write
        "generate --preset tiny --out ds --no-track --no-preview": "ds/dataset.json",
        "train gan --preset tiny --data ds --out gan --steps 2 --no-track": "gan/model/generator_ema.safetensors",
        "sample --model gan --seeds 0 --views 1 --no-turntable --out s": "s/views.png",
        "train diffusion --preset tiny --generator gan --out diff --steps 2 --no-track": "diff/model/style_denoiser.json",
    }
    for command, written in writes.items():
        code, _, err = cli(command)
        assert code == 0, err
        assert (tmp_path / written).is_file(), command


def test_train_diffusion_takes_a_relative_generator(cli, ray_session, tiny_generator, tmp_path, monkeypatch):
    """`--generator gan` used to reach the Ray Train workers as typed and fail there (their
    working folder is Ray Train's), after every restart."""
    shutil.copytree(tiny_generator, tmp_path / "gan")
    monkeypatch.chdir(tmp_path)
    code, stdout, err = cli("train diffusion --preset tiny --generator gan --out diff --steps 2 --no-track")
    assert code == 0, err
    assert (tmp_path / "diff" / "model" / "style_denoiser.json").is_file()
    assert f"model    {tmp_path / 'diff' / 'model'}" in stdout


def test_a_worker_error_a_restart_cannot_fix_is_shown_at_once_and_fails_the_run(
    cli, ray_session, tiny_generator, tmp_path
):
    """A folder that exists but holds no CLIP model passes the driver's check and fails in the
    workers: the CLI's one error names the cause, the run is not retried, MLflow says FAILED."""
    not_clip = tmp_path / "not-clip"
    not_clip.mkdir()
    out = tmp_path / "run"
    code, _, err = cli(
        "train diffusion --preset tiny --generator",
        tiny_generator,
        "--encoder clip --clip-model",
        not_clip,
        "--out",
        out,
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: training failed on worker 0"), err
    assert "not retried" in lines[-1] and "cannot load the CLIP image encoder" in lines[-1]
    assert _mlflow_status(out) == "FAILED"


def _attempt_then_fail(loop_config: dict) -> None:
    """A worker loop that records each attempt, then fails as `kind` says."""
    with open(loop_config["attempts"], "a") as handle:
        handle.write("attempt\n")
    if loop_config["kind"] == "value":
        from avatar_platform.formats.pictures import image_tensor

        image_tensor(Image.new("L", (8, 8)), 8)  # our own code raises ValueError: not RGB
    raise RuntimeError("the collective lost a peer")


@pytest.mark.parametrize(
    ("kind", "attempts", "message"),
    [
        ("value", 1, "(not retried: a restart would fail again): ValueError: image_tensor needs"),
        ("runtime", 2, "(after 1 restart): RuntimeError: the collective lost a peer"),
    ],
)
def test_deterministic_errors_are_not_retried(ray_session, tmp_path, kind, attempts, message):
    import ray.cloudpickle

    from avatar_platform.pipelines.training.ray_job import fit

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
    out = tmp_path / "run"
    out.mkdir()
    record = tmp_path / "attempts.txt"
    with pytest.raises(AvatarPlatformError) as caught:
        fit(
            _attempt_then_fail,
            {"attempts": str(record), "kind": kind},
            out=out,
            workers=1,
            gpu=False,
            steps=1,
            max_failures=1,
            run_id=None,
        )
    assert message in caught.value.message
    assert caught.value.message.startswith("training failed on worker 0")
    assert record.read_text().count("attempt") == attempts


def test_an_undecodable_dataset_is_one_error_before_training(cli, ray_session, tmp_path):
    """A dataset whose images cannot be decoded: one error naming the cause, found on the driver
    before any MLflow run or worker starts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from avatar_platform.pipelines.datagen.config import GenerateConfig
    from avatar_platform.pipelines.datagen.job import run_generate

    data = tmp_path / "ds"
    run_generate(resolve_config(GenerateConfig, "generate", "tiny"), data)
    for part in (data / "data").glob("*.parquet"):
        table = pq.read_table(part)
        garbage = pa.array([b"not a png"] * table.num_rows, pa.binary())
        pq.write_table(table.set_column(table.schema.get_field_index("image"), "image", garbage), part)
    out = tmp_path / "run"
    code, _, err = cli("train gan --preset tiny --data", data, "--out", out)
    assert code == 2
    assert "cannot read the dataset" in err and "UnidentifiedImageError" in err, err
    assert not (out / "run.json").exists()


def test_sample_an_image_with_a_gan_only_model_creates_no_out_folder(cli, tmp_path):
    model = tmp_path / "gan"
    GanTrainer(resolve_config(GanTrainingConfig, "gan", "tiny")).save(model)
    picture = tmp_path / "face.png"
    Image.new("RGB", (32, 32), "white").save(picture)
    out = tmp_path / "out"
    code, _, err = cli("sample --model", model, "--image", picture, "--out", out)
    assert code == 2 and "no style diffusion" in err
    assert not out.exists()


@pytest.fixture
def silent_ray_client():
    """A port that accepts connections and never answers: a Ray client connection times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"ray://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in accepted:
        conn.close()


def test_a_cluster_that_times_out_leaves_no_folder_behind(silent_ray_client, tiny_generator, tmp_path):
    # a fresh process (this one is connected to the tests' Ray already), with short timeouts
    env = {
        **os.environ,
        "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
        "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1",
    }
    commands = {
        "ds": ["generate", "--preset", "tiny", "--no-track"],
        "diff": ["train", "diffusion", "--preset", "tiny", "--generator", str(tiny_generator), "--no-track"],
    }
    for name, argv in commands.items():
        out = tmp_path / name
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "avatar_platform.cli.app",
                *argv,
                "--out",
                str(out),
                "--ray-address",
                silent_ray_client,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 2, done.stderr
        assert "cannot connect to the Ray cluster" in done.stderr
        assert not out.exists(), sorted(p.name for p in out.rglob("*"))
