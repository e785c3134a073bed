"""Fine and coarse view bins (the coarse-to-fine discriminator's pose labels) of view_bins.py."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_platform.pipelines.poses.view_bins import (
    COARSE_VIEW_NAMES,
    ViewBinConfig,
    coarse_view_bin,
    pitch_bin,
    pose_labels,
    view_name,
    yaw_bin,
)


@pytest.mark.parametrize(
    ("yaw", "expected"),
    [
        (0.0, 0),
        (44.9, 0),
        (-44.9, 0),
        (-45.0, 0),
        (45.0, 1),
        (90.0, 1),
        (134.9, 1),
        (135.0, 2),
        (180.0, 2),
        (-180.0, 2),
        (-135.1, 2),
        (-135.0, 3),
        (-90.0, 3),
        (-45.1, 3),
        (360.0, 0),
        (450.0, 1),
        (-270.0, 1),
    ],
)
def test_coarse_view_bin(yaw, expected):
    assert int(coarse_view_bin(yaw)) == expected


def test_coarse_view_names():
    assert COARSE_VIEW_NAMES == ("front", "left", "back", "right")
    assert [view_name(int(coarse_view_bin(y))) for y in (0, 90, 180, -90)] == list(COARSE_VIEW_NAMES)


def test_coarse_view_bin_vectorised():
    bins = coarse_view_bin(np.array([0.0, 90.0, 180.0, -180.0, -90.0, 44.9, 45.0]))
    assert bins.dtype == np.int64
    np.testing.assert_array_equal(bins, [0, 1, 2, 2, 3, 0, 1])


@pytest.mark.parametrize(
    ("yaw", "expected"),
    [
        (0.0, 0),
        (14.9, 0),
        (-15.0, 0),
        (15.0, 1),
        (30.0, 1),
        (45.0, 2),
        (90.0, 3),
        (180.0, 6),
        (-180.0, 6),
        (-90.0, 9),
        (-15.1, 11),
        (-30.0, 11),
    ],
)
def test_fine_yaw_bins_with_12(yaw, expected):
    assert int(yaw_bin(yaw, 12)) == expected


def test_fine_yaw_bins_cover_all_bins_in_order():
    yaws = np.arange(12) * 30.0  # the bin centres
    np.testing.assert_array_equal(yaw_bin(yaws, 12), np.arange(12))
    np.testing.assert_array_equal(yaw_bin(yaws - 360.0, 12), np.arange(12))


@pytest.mark.parametrize(
    ("pitch", "expected"),
    [
        (-30.0, 0),
        (-10.1, 0),
        (-10.0, 1),
        (0.0, 1),
        (9.9, 1),
        (10.0, 2),
        (29.9, 2),
        (30.0, 2),
        (-60.0, 0),
        (-89.0, 0),
        (45.0, 2),
        (89.0, 2),
    ],
)
def test_pitch_bins_clamp_outside_the_range(pitch, expected):
    assert int(pitch_bin(pitch, 3, (-30.0, 30.0))) == expected


def test_single_pitch_bin_is_always_zero():
    np.testing.assert_array_equal(pitch_bin(np.array([-80.0, 0.0, 80.0]), 1, (-30.0, 30.0)), 0)


def test_pose_labels_shapes_and_one_hots():
    config = ViewBinConfig()
    yaw = np.array([0.0, 90.0, 180.0, -90.0, 44.9, -170.0])
    pitch = np.array([0.0, 25.0, -25.0, 50.0, -50.0, 5.0])
    fine, coarse = pose_labels(yaw, pitch, config)
    assert fine.shape == (len(yaw), 12 + 3)
    assert coarse.shape == (len(yaw), 4 + 1)
    assert fine.dtype == coarse.dtype == np.float32
    assert set(np.unique(fine)) <= {0.0, 1.0} and set(np.unique(coarse)) <= {0.0, 1.0}
    np.testing.assert_array_equal(fine.sum(axis=1), 2)
    np.testing.assert_array_equal(coarse.sum(axis=1), 2)
    # one of each in the yaw part and one in the pitch part
    np.testing.assert_array_equal(fine[:, :12].sum(axis=1), 1)
    np.testing.assert_array_equal(fine[:, 12:].sum(axis=1), 1)
    np.testing.assert_array_equal(coarse[:, :4].sum(axis=1), 1)
    np.testing.assert_array_equal(coarse[:, 4:], 1)
    np.testing.assert_array_equal(fine[:, :12].argmax(axis=1), yaw_bin(yaw, 12))
    np.testing.assert_array_equal(fine[:, 12:].argmax(axis=1), [1, 2, 0, 2, 0, 1])
    np.testing.assert_array_equal(coarse[:, :4].argmax(axis=1), [0, 1, 2, 3, 0, 2])


def test_pose_labels_of_a_scalar_view():
    fine, coarse = pose_labels(90.0, 0.0, ViewBinConfig())
    assert fine.shape == (1, 15) and coarse.shape == (1, 5)
    assert fine[0, 3] == 1 and fine[0, 12 + 1] == 1 and fine.sum() == 2
    assert coarse[0, 1] == 1 and coarse[0, 4] == 1 and coarse.sum() == 2


def test_pose_labels_follow_the_config():
    config = ViewBinConfig(fine_yaw_bins=8, fine_pitch_bins=2, coarse_pitch_bins=2)
    fine, coarse = pose_labels(np.array([0.0, 100.0]), np.array([-20.0, 20.0]), config)
    assert fine.shape == (2, 10) and coarse.shape == (2, 6)
    np.testing.assert_array_equal(fine.sum(axis=1), 2)
    np.testing.assert_array_equal(coarse.sum(axis=1), 2)
    np.testing.assert_array_equal(coarse[:, 4:].argmax(axis=1), [0, 1])
