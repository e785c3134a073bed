"""What every `avatar-platform train ...` job shares: its output folder, its MLflow run, a
Ray Train TorchTrainer with failure restarts, the driver's progress bar, and the final model
folder copied out of the last checkpoint.

Output folder: `model/` (the final model folder), `ray/` (Ray Train's run and checkpoints,
which `--resume` continues), `run.json` (the MLflow run), `config.resolved.json`.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import avatar_platform
from avatar_platform.core.errors import AvatarPlatformError
from avatar_platform.core.progress import progress_bar
from avatar_platform.core.tracking import (
    configure_mlflow,
    ended_on_error,
    flatten_params,
    point_mlflow,
    reopen_run,
    tracking_uri,
)
from avatar_platform.formats.model_folder import write_metrics

RUN_NAME = "train"


@dataclass
class TrainSummary:
    out: Path
    model: Path
    steps: int
    seconds: float
    run_id: str | None
    metrics: dict


def prepare_out(out: Path, resume: bool) -> None:
    has_run = (out / "ray" / RUN_NAME).exists()
    if resume and not has_run:
        raise AvatarPlatformError(
            f"nothing to resume in '{out}' (no earlier training run there)",
            fix="pass the --out of the stopped run, or drop --resume to start a new one",
        )
    if not resume and (has_run or (out / "model").exists()):
        raise AvatarPlatformError(
            f"'{out}' already holds a training run",
            fix="pass --resume to continue it, or choose another --out",
        )


class ProgressWatcher:
    """Shows rank 0's progress file as a progress bar while `fit()` blocks the driver."""

    def __init__(self, path: Path, total: int):
        self.path, self.total = path, total
        self.stop = threading.Event()

    def _run(self) -> None:
        shown = None
        with progress_bar("training", self.total) as bar:
            while not self.stop.wait(0.5):
                try:
                    step = int(json.loads(self.path.read_text())["step"])
                except (OSError, ValueError, KeyError):
                    continue
                if shown is None:  # a resumed run starts where it left off
                    shown = 0
                bar.advance(step - shown)
                shown = step

    def __enter__(self):
        self.path.unlink(missing_ok=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


class RunLogger:
    """Rank 0's MLflow client for an existing run (no-op on other ranks or without a run)."""

    def __init__(self, tracking_uri: str | None, run_id: str | None, enabled: bool):
        self.run_id = run_id if enabled else None
        if self.run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=tracking_uri)

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k.replace("/", "_"), float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def image(self, image, path: str) -> None:
        if self.run_id:
            self.client.log_image(self.run_id, image, artifact_file=path)


def worker_setup(loop_config: dict) -> tuple[int, int, RunLogger]:
    """A Ray Train worker's rank, world size and MLflow logger (rank 0 logs); without a GPU,
    torch gets the worker's share of the CPU cores."""
    import ray.train
    import torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if not torch.cuda.is_available():
        torch.set_num_threads(max(loop_config.get("cpu_threads", 1), 1))
    logger = RunLogger(loop_config.get("tracking_uri"), loop_config.get("run_id"), rank == 0)
    return rank, world, logger


def resume_from_checkpoint(trainer, logger: RunLogger) -> None:
    """Load Ray Train's latest checkpoint, if any (a restart after a failure, or --resume), into
    `trainer` (its `load(folder)`) and record the step in MLflow."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder))
        logger.metrics({"resumed_from_step": trainer.step}, trainer.step)


def start_worker(loop_config: dict, config_type: type, build_trainer: Callable) -> tuple:
    """A Ray Train worker's (config, rank, logger, trainer): the loop's config as `config_type`,
    and `build_trainer(config, device=, rank=, world_size=)` resumed from Ray Train's latest
    checkpoint, if any."""
    import ray.train.torch

    config = config_type.model_validate(loop_config["config"])
    rank, world, logger = worker_setup(loop_config)
    trainer = build_trainer(config, device=ray.train.torch.get_device(), rank=rank, world_size=world)
    resume_from_checkpoint(trainer, logger)
    return config, rank, logger, trainer


def due(step: int, every: int, last: bool) -> bool:
    """Every `every` steps and at the last step; `every` = 0: at the last step only."""
    return last or (every > 0 and step % every == 0)


def training_steps(
    trainer,
    steps: int,
    log_every: int,
    loop_config: dict,
    rank: int,
    logger: RunLogger,
    batches: Iterable | None = None,
    images_per_step: int | None = None,
) -> Iterator[tuple[int, dict, bool]]:
    """`trainer.train_step()` (or `train_step(batch)` for each of `batches`, which must not run
    out) until step `steps`; after each, rank 0's progress file is written, and every `log_every`
    steps (and at the last) the metrics go to MLflow. With `images_per_step` the metrics also
    hold `throughput_images_per_second`, wall clock between steps (data loading and reporting
    included) from the third step on. Yields (step, metrics, last) for the loop's own samples,
    evaluations and checkpoints."""
    progress = loop_config.get("progress_file")
    source = iter(batches) if batches is not None else None
    warm: tuple[int, float] | None = None  # (step, time) where throughput is measured from
    while trainer.step < steps:
        metrics = trainer.train_step() if source is None else trainer.train_step(next(source))
        step, last = trainer.step, trainer.step == steps
        if images_per_step is not None:
            if warm is None and step >= min(2, steps - 1):
                warm = (step, time.perf_counter())
            elif warm is not None:
                seconds = time.perf_counter() - warm[1]
                metrics["throughput_images_per_second"] = (
                    (step - warm[0]) * images_per_step / max(seconds, 1e-9)
                )
        if rank == 0 and progress:
            write_progress(Path(progress), step, metrics)
        if due(step, log_every, last):
            logger.metrics(metrics, step)
        yield step, metrics, last


def report_checkpoint(step: int, metrics: dict, save: Callable[[Path], None], rank: int) -> None:
    """Every rank reports (the workers stay in step); rank 0 attaches the checkpoint `save` writes."""
    import ray.train

    report = {"step": step, **metrics}
    if rank != 0:
        ray.train.report(report)
        return
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder))
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(folder))


def write_progress(path: Path, step: int, metrics: dict) -> None:
    """Rank 0 writes this for the driver's progress bar (same machine); MLflow has the record."""
    tmp = path.with_suffix(".tmp")
    rate = metrics.get("images_per_second", 0.0)
    tmp.write_text(json.dumps({"step": step, "images_per_second": rate}))
    tmp.replace(path)


# Errors a restart from the last checkpoint cannot fix (bad input, a bug in our code): a worker
# that raises one stops the run at once instead of using up FailureConfig's restarts.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_VALUE_ERRORS = (ValueError, TypeError, LookupError, AttributeError, NotImplementedError)
_PACKAGE = Path(avatar_platform.__file__).resolve().parent


class DeterministicWorkerError(Exception):
    """A worker's error that would repeat on every restart; carries the original's type name and
    message (plain strings: it crosses processes whatever the original was)."""

    def __init__(self, kind: str, message: str):
        self.kind, self.message = kind, message
        super().__init__(f"{kind}: {message}")

    def __reduce__(self):
        return (type(self), (self.kind, self.message))


class TrainingStopped(Exception):
    """Raised on the Ray Train controller to stop a run at once on a deterministic worker error
    (the controller does not retry its own errors); carries the worker's rank and error."""

    def __init__(self, rank: int, error: BaseException):
        self.rank, self.error = rank, error
        super().__init__(f"worker {rank}: {type(error).__name__}: {error}")

    def __reduce__(self):
        return (type(self), (self.rank, self.error))


def root_cause(error: BaseException) -> BaseException:
    """The error inside Ray's wrappers (RayTaskError's cause, Ray Data's UserCodeException's
    __cause__), or `error` itself."""
    seen: set[int] = set()
    while id(error) not in seen and type(error).__module__.startswith("ray."):
        seen.add(id(error))
        inner = getattr(error, "cause", None)
        inner = inner if isinstance(inner, BaseException) else error.__cause__
        if inner is None:
            break
        error = inner
    return error


def _raised_in_our_code(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


def is_deterministic(err: BaseException) -> bool:
    """Whether a restart would meet `err` again: a user error (AvatarPlatformError), a config
    error (pydantic's ValidationError), a missing path, or a ValueError-type error raised by
    avatar_platform's own code. Ray's system errors (a lost worker or node) never are."""
    from pydantic import ValidationError
    from ray.exceptions import RayError

    if isinstance(err, DeterministicWorkerError | AvatarPlatformError | ValidationError):
        return True
    cause = root_cause(err)
    if cause is not err:  # a Ray task's error (e.g. Ray Data's decode) wraps its cause
        return is_deterministic(cause)
    if isinstance(err, RayError):  # a lost worker, actor or node
        return False
    if isinstance(err, _PATH_ERRORS):
        return True
    return isinstance(err, _VALUE_ERRORS) and _raised_in_our_code(err)


def stop_on_deterministic_errors(loop: Callable[[dict], None]) -> Callable[[dict], None]:
    """The worker loop `loop`, with deterministic errors marked for `fit`'s controller callback
    (AvatarPlatformError as itself, others as DeterministicWorkerError)."""

    @functools.wraps(loop)
    def train_loop(loop_config: dict) -> None:
        try:
            loop(loop_config)
        except AvatarPlatformError:
            raise
        except Exception as err:
            if not is_deterministic(err):
                raise
            raise DeterministicWorkerError(type(err).__name__, str(err)) from err

    return train_loop


def _stop_callback():
    """A Ray Train UserCallback (it runs on the controller) that turns a deterministic worker
    error into a controller error: Ray Train V2 retries worker errors up to `max_failures` but
    never a controller's own (FailureDecision RAISE), so the run stops at once."""
    from ray.train import UserCallback

    class StopOnDeterministicErrors(UserCallback):
        def after_exception(self, run_context, worker_exceptions: dict) -> None:
            for rank in sorted(worker_exceptions):
                error = worker_exceptions[rank]
                if isinstance(error, DeterministicWorkerError | AvatarPlatformError):
                    raise TrainingStopped(rank, error)

    return StopOnDeterministicErrors()


def _first_line(text: str, limit: int = 300) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "").strip()[:limit]


_TRACEBACK_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Warning)): (.+)$", re.M)


def describe_error(error: BaseException) -> str:
    """'Type: message' of a worker's error (a Ray task error: of its cause)."""
    if isinstance(error, DeterministicWorkerError):
        return f"{error.kind}: {_first_line(error.message)}"
    root = root_cause(error)
    if type(root).__module__.startswith("ray."):
        # a Ray task's error crosses processes as text: its traceback names the original
        found = [m for m in _TRACEBACK_ERROR.finditer(str(error)) if not m[1].startswith("ray.")]
        if found:
            return f"{found[-1][1].rsplit('.', 1)[-1]}: {_first_line(found[-1][2])}"
    return f"{type(root).__name__}: {_first_line(str(root))}"


def training_failure(err: Exception, out: Path, max_failures: int) -> AvatarPlatformError:
    """The CLI's one error for a failed `fit()`: which worker, the type and message of its error,
    and whether restarts were tried (Ray Train's own message names neither)."""
    from ray.train import ControllerError, WorkerGroupError

    fix = f"the last checkpoint is kept: after fixing the cause, re-run with --resume --out {out}"
    if isinstance(err, ControllerError) and isinstance(err.controller_failure, TrainingStopped):
        stopped = err.controller_failure
        rank, error = stopped.rank, stopped.error
        attempts = "not retried: a restart would fail again"
    elif isinstance(err, WorkerGroupError) and err.worker_failures:
        rank = min(err.worker_failures)
        error = err.worker_failures[rank]
        attempts = f"after {max_failures} restart{'s' if max_failures != 1 else ''}"
    elif isinstance(err, ControllerError):
        rank, error, attempts = None, err.controller_failure, "in Ray Train's controller"
    else:
        rank, error, attempts = None, err, ""
    where = f"on worker {rank}" if rank is not None else ""
    head = " ".join(part for part in ("training failed", where) if part)
    if isinstance(error, AvatarPlatformError):
        return AvatarPlatformError(f"{head} ({attempts}): {error.what}", error.expected, error.fix or fix)
    return AvatarPlatformError(
        f"{head}{f' ({attempts})' if attempts else ''}: {describe_error(error)}",
        fix=f"see the worker logs for the traceback; {fix}",
    )


def use_gpu(requested: bool | None) -> bool:
    import ray

    if requested is not None:
        return requested
    return ray.cluster_resources().get("GPU", 0) > 0


def prepare(
    config, out: Path, *, resume: bool, ray_address: str | None, extra_cpus: int = 1
) -> tuple[Path, bool]:
    """Everything before `fit`: the cluster is reachable and big enough, the output folder is
    writable and right for `resume`, the resolved config is saved. Returns (out, use GPUs)."""
    from avatar_platform.core.config import save_resolved
    from avatar_platform.core.paths import ensure_writable_dir, removed_if_failed, user_path
    from avatar_platform.core.ray_runtime import (
        check_ray_address,
        gpus_to_use,
        init_ray,
        require_resources,
        require_shared_folder,
    )

    check_ray_address(ray_address)
    out = user_path(out)
    prepare_out(out, resume)
    with removed_if_failed(out):  # a run that cannot start leaves no empty folder behind
        out = ensure_writable_dir(out)
        init_ray(ray_address, min_cpus=config.workers + extra_cpus)
        if config.gpus == "auto":
            gpu = use_gpu(config.use_gpu)
        else:
            gpu = gpus_to_use(config.gpus, config.workers, config.gpu_wait_s, f"{config.workers} workers")
        require_resources(config.workers, {"num_cpus": 1, **({"num_gpus": 1} if gpu else {})})
        require_shared_folder(out)  # checkpoints are written by the workers, read here
    save_resolved(config, out / "config.resolved.json")
    return out, gpu


def start_run(
    out: Path, experiment: str, run_name: str, config, tags: dict, extra_params: dict | None = None
) -> str:
    """The MLflow run of this output folder: the one in `run.json`, or a new one."""
    run_file = out / "run.json"
    if run_file.exists():  # --resume: the stopped run is running again
        return reopen_run(json.loads(run_file.read_text())["run_id"])
    mlflow = configure_mlflow(experiment)
    client = mlflow.MlflowClient()
    run = client.create_run(
        mlflow.get_experiment_by_name(experiment).experiment_id, run_name=run_name, tags=tags
    )
    run_id = run.info.run_id
    params = {**flatten_params(config.model_dump(mode="json")), **(extra_params or {})}
    for key, value in params.items():
        client.log_param(run_id, key, value)
    client.log_dict(run_id, config.model_dump(mode="json"), "config.json")
    run_file.write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking_uri()}) + "\n")
    return run_id


def fit(
    loop: Callable[[dict], None],
    loop_config: dict,
    *,
    out: Path,
    workers: int,
    gpu: bool,
    steps: int,
    max_failures: int,
    run_id: str | None,
    datasets: dict | None = None,
) -> TrainSummary:
    """Run `loop` on `workers` Ray Train workers, then copy the last checkpoint to `out/model`
    (whole or not at all) and attach it to the MLflow run."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cores = os.cpu_count() or 1
    trainer = TorchTrainer(
        stop_on_deterministic_errors(loop),
        train_loop_config={
            **loop_config,
            "tracking_uri": tracking_uri() if run_id else None,
            "run_id": run_id,
            "cpu_threads": max(cores // workers, 1),
            "progress_file": str(out / "progress.json"),
            "out": str(out),
        },
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers,
            use_gpu=gpu,
            # Ray Train names resources as the cluster does (CPU/GPU), not as tasks do
            resources_per_worker={"CPU": 1, **({"GPU": 1} if gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=RUN_NAME,
            storage_path=str(out / "ray"),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[_stop_callback()],
        ),
        datasets=datasets,
    )
    started = time.perf_counter()
    try:
        with ProgressWatcher(out / "progress.json", steps):
            result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise training_failure(err, out, max_failures) from None
    seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise AvatarPlatformError("training finished without a checkpoint")
    model = out / "model"
    staging = out / ".model-staging"
    shutil.rmtree(staging, ignore_errors=True)
    with result.checkpoint.as_directory() as folder:
        shutil.copytree(folder, staging)
    metrics = dict(result.metrics or {})
    # the final numbers travel with the model; a loop's own record (its FID) wins
    write_metrics(staging, {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
    shutil.rmtree(model, ignore_errors=True)
    staging.rename(model)
    if run_id:
        import mlflow

        point_mlflow()
        client = mlflow.MlflowClient()
        client.log_artifacts(run_id, str(model), "model")
        client.set_terminated(run_id)
    return TrainSummary(out, model, int(metrics.get("step", steps)), seconds, run_id, metrics)


def tracked_fit(
    loop: Callable[[dict], None],
    loop_config: dict,
    config,
    *,
    out: Path,
    gpu: bool,
    experiment: str,
    run_name: str,
    tags: dict,
    track: bool,
    max_failures: int,
    extra_params: dict | None = None,
    datasets: dict | None = None,
) -> TrainSummary:
    """`fit` inside its MLflow run (started, or reopened on `--resume`, when `track`), which ends
    KILLED on Ctrl-C and FAILED on any other error."""
    run_id = start_run(out, experiment, run_name, config, tags, extra_params) if track else None
    with ended_on_error(run_id):
        return fit(
            loop,
            loop_config,
            out=out,
            workers=config.workers,
            gpu=gpu,
            steps=config.steps,
            max_failures=max_failures,
            run_id=run_id,
            datasets=datasets,
        )
