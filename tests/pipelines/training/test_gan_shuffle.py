"""A worker's shuffle buffer: the whole shard when it fits, so that a batch mixes avatars (a
dataset is written avatar by avatar, all views of one avatar in a row)."""

from __future__ import annotations

from avatar_platform.pipelines.training.gan.data import SHUFFLE_BYTES, shuffle_rows


def test_a_small_dataset_is_shuffled_whole_on_each_worker():
    assert shuffle_rows(8192, 64, masks=True, workers=1, batch=8) == 8192
    assert shuffle_rows(8192, 64, masks=True, workers=2, batch=4) == 4096
    assert shuffle_rows(9, 64, masks=False, workers=2, batch=2) == 8  # never under 4 batches


def test_a_large_dataset_fills_the_byte_budget():
    rows = shuffle_rows(500_000, 512, masks=True, workers=8, batch=4)
    assert rows == SHUFFLE_BYTES // (4 * 512 * 512) and rows >= 16
