"""The rim metric: how far a picture overshoots its neural render along the silhouette."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avatar_platform.pipelines.evaluation.rim import data_rim, overshoot, silhouette_band


def _disc(size: int) -> torch.Tensor:
    """(1, 1, size, size): 1 inside a centred disc of radius size/4, else 0."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    return (((ys - centre) ** 2 + (xs - centre) ** 2) <= (size / 4) ** 2).float()[None, None]


def _picture(mask: torch.Tensor, avatar: float = 0.6, backdrop: float = -0.4) -> torch.Tensor:
    return (mask * avatar + (1 - mask) * backdrop).expand(-1, 3, -1, -1)


def test_the_band_is_the_pixels_along_the_silhouette_only():
    mask = _disc(64)
    band = silhouette_band(mask)
    assert band.any() and not band[..., 0, 0].any() and not band[..., 32, 32].any()
    edge = (F.max_pool2d(mask, 3, 1, 1) - mask).bool()  # the pixels just outside the disc
    assert band[edge].all()


def test_a_sharp_or_upsampled_edge_has_no_rim_and_a_halo_has_one():
    mask = _disc(64)
    picture = _picture(mask)
    low = F.interpolate(picture, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    up = F.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    for image in (picture, up):  # sharpening the edge back, or only upsampling: inside the range
        total, count = overshoot(image, low, mask)
        assert count > 0 and total / count < 0.02  # a hard edge: a little beyond a blurred range
    band = silhouette_band(mask).expand_as(picture)
    # a ring brighter than both sides just outside the avatar, or darker than both just inside
    for ring, side in ((1.0, mask == 0), (-0.9, mask == 1)):
        halo = torch.where(band & side.expand_as(picture), torch.tensor(ring), picture)
        total, count = overshoot(halo, low, mask)
        assert total / count > 0.1


def test_the_datas_own_rim_is_measured_on_uint8_pictures_either_layout():
    mask = _disc(64)[:, 0].expand(2, -1, -1).numpy() > 0.5
    picture = ((_picture(_disc(64)).expand(2, -1, -1, -1) + 1) * 127.5).round().byte().numpy()
    channels_first = data_rim(picture, mask, 32)
    channels_last = data_rim(np.ascontiguousarray(picture.transpose(0, 2, 3, 1)), mask, 32)
    assert channels_first == channels_last and 0.0 <= channels_first < 0.02
