"""Benchmark of serving: latency (p50/p99) and throughput of `POST /v1/avatars` on a real Ray
Serve app at concurrency 1, 4 and 16, beside the same avatars rendered by calling the model
in-process (the Serve overhead as a ratio), with 1 and then 2 model replicas.

Each request asks for one seed, `--views` views, no turntable and no mesh. Without --model a
generator of the `tiny` preset (random weights) is built, which makes the overhead look largest.
One JSON object per line. Usage:
    .venv/bin/python bench/serve.py [--model .avatar/demo/gan] [--requests 48] [--views 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(1000 * statistics.median(ordered), 1), "p99_ms": round(1000 * p99, 1)}


def tiny_model(folder: Path) -> Path:
    import torch

    from avatar_platform.core.config import resolve_config
    from avatar_platform.models.eg3d.generator import TriPlaneGenerator
    from avatar_platform.pipelines.training.gan.config import GanTrainingConfig

    torch.manual_seed(0)
    config = resolve_config(GanTrainingConfig, "gan", "tiny").generator
    TriPlaneGenerator(config).save_pretrained(folder, "generator_ema")
    return folder


def in_process(model_folder: Path, views: int, requests: int, threads: int) -> dict:
    import torch

    from avatar_platform.pipelines.inference.pyfunc import AvatarRequest, load_model
    from avatar_platform.serve.avatars import render_jobs

    torch.set_num_threads(threads)
    model = load_model(model_folder, device="cpu")
    latencies = []
    for seed in range(requests + 2):
        job = AvatarRequest(seed=seed, views=views, mesh_resolution=16)
        started = time.perf_counter()
        render_jobs(model, [job])
        if seed >= 2:  # two warm-up calls
            latencies.append(time.perf_counter() - started)
    return {**percentiles(latencies), "avatars_per_s": round(len(latencies) / sum(latencies), 2)}


def load(url: str, views: int, requests: int, concurrency: int) -> dict:
    import requests as http

    def one(seed: int) -> float:
        started = time.perf_counter()
        response = http.post(
            f"{url}/v1/avatars", timeout=300, json={"seeds": [seed], "views": views, "turntable": False}
        )
        response.raise_for_status()
        return time.perf_counter() - started

    for seed in range(concurrency):  # warm-up
        one(10_000 + seed)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    return {**percentiles(latencies), "avatars_per_s": round(requests / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: a tiny random generator)")
    parser.add_argument("--requests", type=int, default=48, help="requests per level")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--replicas", default="1,2")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from ray import serve

    from avatar_platform.core.ray_runtime import init_ray
    from avatar_platform.formats.model_folder import resolve_package_folder
    from avatar_platform.serve.app import build_app

    scratch = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    folder = resolve_package_folder(args.model) if args.model else tiny_model(scratch / "model")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
    common = {"model": str(folder), "views": args.views, "machine": machine}
    # a replica with num_cpus=1 gets one torch thread (Ray sets OMP_NUM_THREADS): the fair
    # baseline for the Serve overhead; all cores is what one process on this machine can do
    one_thread = in_process(folder, args.views, args.requests, threads=1)
    print(json.dumps({"what": "in-process render_jobs, 1 thread", **common, **one_thread}), flush=True)
    baseline = in_process(folder, args.views, args.requests, threads=os.cpu_count() or 1)
    print(json.dumps({"what": "in-process render_jobs, all cores", **common, **baseline}), flush=True)

    init_ray(min_cpus=4)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    try:
        for replicas in (int(r) for r in args.replicas.split(",")):
            config = {
                "model": str(folder),
                "min_replicas": replicas,
                "max_replicas": replicas,
                "num_cpus": 1,
                "results_dir": str(scratch / "results"),
                "max_queued_requests": 256,
            }
            serve.run(build_app(config), name="bench", route_prefix="/")
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                result = load(url, args.views, args.requests, concurrency)
                print(
                    json.dumps(
                        {
                            "what": "serve POST /v1/avatars",
                            **common,
                            "replicas": replicas,
                            "concurrency": concurrency,
                            **result,
                            "p50_vs_in_process_1_thread": round(result["p50_ms"] / one_thread["p50_ms"], 2),
                            "throughput_vs_in_process_all_cores": round(
                                result["avatars_per_s"] / baseline["avatars_per_s"], 2
                            ),
                        }
                    ),
                    flush=True,
                )
    finally:
        serve.shutdown()


if __name__ == "__main__":
    main()
