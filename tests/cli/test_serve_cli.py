"""`avatar-platform serve` as a user runs it (a real server in a child process, stopped with
Ctrl-C), and `serve config`, whose YAML Ray Serve accepts and builds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import requests
import yaml

from avatar_platform.cli.app import main


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_runs_a_model_folder_until_ctrl_c(tiny_generator, tmp_path):
    import queue
    import threading

    port = _free_port()
    env = {**os.environ, "AVATAR_HOME": str(tmp_path / "home"), "AVATAR_API_KEY": "k-123456"}
    command = [
        sys.executable,
        "-m",
        "avatar_platform.cli.app",
        "serve",
        "--preset",
        "tiny",
        "--model",
        str(tiny_generator),
        "--port",
        str(port),
    ]
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    # both pipes drained by threads, so a chatty child never blocks on a full pipe
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: [lines.put(line) for line in child.stdout]),
        threading.Thread(target=lambda: errors.extend(child.stderr)),
    ]
    for reader in readers:
        reader.start()
    url = f"http://127.0.0.1:{port}"
    out: list[str] = []
    try:
        # the user's signal that it is up: `serve` prints its URLs once the app is RUNNING
        deadline = time.monotonic() + 240
        while not any("Ctrl-C stops the server" in line for line in out):
            assert child.poll() is None, "".join(errors)
            assert time.monotonic() < deadline, f"not up after 240 s: {out}"
            with contextlib.suppress(queue.Empty):
                out.append(lines.get(timeout=1))
        key = {"X-API-Key": "k-123456"}
        assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
        assert requests.get(f"{url}/v1/model", timeout=30).status_code == 401
        info = requests.get(f"{url}/v1/model", headers=key, timeout=60).json()
        assert info["uri"] == str(tiny_generator) and info["image_conditioning"] is False
        made = requests.post(f"{url}/v1/avatars", json={"seeds": [0], "views": 2}, headers=key, timeout=120)
        assert made.status_code == 201, made.text
        # a generator-only model refuses pictures with a reason, not a crash
        refused = requests.post(
            f"{url}/v1/avatars", headers=key, timeout=60, files={"image": ("a.png", b"x", "image/png")}
        )
        assert refused.status_code == 422 and "image conditioning" in refused.json()["error"]
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=120)
        for reader in readers:
            reader.join(timeout=10)
    out += list(lines.queue)
    assert child.returncode == 0, "".join(errors)
    text = "".join(out)
    assert f"serving {tiny_generator}" in text and f"{url}/v1/avatars" in text


def test_serve_refuses_a_missing_model_and_a_busy_port_before_starting(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "is not a model" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "no model to serve" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--model", str(tmp_path), "--port", str(port)]) == 2


def test_serve_config_writes_a_serve_config_ray_accepts(tmp_path, capsys, monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    from avatar_platform.serve.app import build_app
    from avatar_platform.serve.config import IMPORT_PATH

    monkeypatch.setenv("AVATAR_API_KEY", "k-123456")  # a secret never goes into the file
    out = tmp_path / "serve.yaml"
    code = main(
        [
            "serve",
            "config",
            "--model",
            "models:/styleavatar3d@champion",
            "--max-replicas",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    document = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(document)
    [application] = document["applications"]
    assert application["import_path"] == IMPORT_PATH
    args = application["args"]
    assert args["model"] == "models:/styleavatar3d@champion"
    assert args["max_replicas"] == 4 and args["num_gpus"] == 1  # the paper preset's GPU replicas
    assert "api_key" not in args and "k-123456" not in out.read_text()
    assert build_app(args) is not None  # what the RayService will import and call
    assert main(["serve", "config", "--model", "m", "--min-replicas", "5", "--max-replicas", "2"]) == 2
    assert "min_replicas" in capsys.readouterr().err
