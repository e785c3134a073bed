"""The one step driver of the three trainers: when things are due, what each step yields, the
progress file, and the GAN's batches and throughput through the same loop."""

from __future__ import annotations

import json

import pytest

from avatar_platform.pipelines.training.ray_job import RunLogger, due, training_steps


@pytest.mark.parametrize(
    ("step", "every", "last", "expected"),
    [(4, 2, False, True), (3, 2, False, False), (3, 0, False, False), (3, 0, True, True), (5, 2, True, True)],
)
def test_due_means_every_n_steps_and_the_last_and_zero_means_the_last_only(step, every, last, expected):
    assert due(step, every, last) is expected


class Counter:
    """The trainer contract the driver relies on: `step`, and `train_step([batch])` → metrics."""

    def __init__(self):
        self.step, self.seen = 0, []

    def train_step(self, batch=None):
        self.step += 1
        self.seen.append(batch)
        return {"loss": 1.0 / self.step}


def test_the_driver_runs_to_the_step_count_and_writes_rank_zeros_progress(tmp_path):
    trainer = Counter()
    progress = tmp_path / "progress.json"
    steps = list(
        training_steps(trainer, 5, 2, {"progress_file": str(progress)}, 0, RunLogger(None, None, False))
    )
    assert [(s, last) for s, _, last in steps] == [(1, False), (2, False), (3, False), (4, False), (5, True)]
    assert trainer.seen == [None] * 5  # no batches: train_step()
    assert json.loads(progress.read_text())["step"] == 5


def test_batches_feed_train_step_and_throughput_is_measured_after_the_first_steps(tmp_path):
    trainer = Counter()
    trainer.step = 2  # a resumed run continues from its checkpoint's step
    batches = iter(range(100))
    out = list(training_steps(trainer, 8, 1, {}, 1, RunLogger(None, None, False), batches, images_per_step=4))
    assert trainer.seen == [0, 1, 2, 3, 4, 5] and [s for s, _, _ in out] == [3, 4, 5, 6, 7, 8]
    assert "throughput_images_per_second" not in out[0][1]  # the step it starts measuring at
    assert all(m["throughput_images_per_second"] > 0 for _, m, _ in out[1:])
    assert not (tmp_path / "progress.json").exists()  # rank 1 writes no progress
