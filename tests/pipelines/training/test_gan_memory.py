"""gan.memory: checkpointing the renderer trades compute for memory and changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_platform.core.config import resolve_config
from avatar_platform.pipelines.poses.camera import CameraConfig, camera_from_angles
from avatar_platform.pipelines.training.gan.config import GanTrainingConfig
from avatar_platform.pipelines.training.gan.trainer import GanTrainer

TINY = resolve_config(GanTrainingConfig, "gan", "tiny")
# float32 sums over a chunk instead of the whole image: the same numbers up to rounding
TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def _memory(**settings) -> GanTrainingConfig:
    return TINY.model_copy(update={"memory": TINY.memory.model_copy(update=settings)})


def _render_gradients(G, chunk: int | None):
    """Gradients of a rendered image's loss on every G weight, with noise from a fixed seed."""
    G.zero_grad(set_to_none=True)
    cams = torch.tensor(np.stack([camera_from_angles(y, 5.0, CameraConfig()) for y in (10.0, 170.0)])).float()
    z = torch.randn(2, G.config.z_dim, generator=torch.Generator().manual_seed(1))
    out = G.synthesis(
        G.map(z, cams), cams, perturb=True, generator=torch.Generator().manual_seed(2), checkpoint_rays=chunk
    )
    loss = sum((out[k].float() ** 2).mean() for k in ("image", "image_raw", "opacity", "image_depth"))
    loss.backward()
    return out, {name: p.grad.clone() for name, p in G.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [7, 64])  # a chunk that does not divide the rays, and one that does
def test_checkpointed_rendering_gives_the_same_images_and_gradients(chunk):
    G = GanTrainer(TINY).G
    plain_out, plain = _render_gradients(G, None)
    out, grads = _render_gradients(G, chunk)
    for key in plain_out:
        torch.testing.assert_close(out[key], plain_out[key], **TOLERANCE)
    assert grads.keys() == plain.keys() and "decoder.hidden.weight" in grads
    for name in plain:
        torch.testing.assert_close(grads[name], plain[name], **TOLERANCE, msg=name)


def test_a_training_step_with_checkpointing_moves_the_weights_as_without(gan_batch):
    plain, saving = GanTrainer(TINY), GanTrainer(_memory(checkpoint_renderer=True, ray_chunk=50))
    plain.train_step(gan_batch())
    saving.train_step(gan_batch())
    for name in ("G", "D"):
        for a, b in zip(getattr(plain, name).parameters(), getattr(saving, name).parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_checkpointing_keeps_less_for_backward():
    # what autograd saves for backward, counted once per storage (bench/memory.py does it by part)
    def saved_bytes(chunk):
        G = GanTrainer(TINY).G
        seen: dict[int, int] = {}

        def pack(t):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        cams = torch.tensor(np.stack([camera_from_angles(0.0, 0.0, CameraConfig())] * 2)).float()
        z = torch.randn(2, G.config.z_dim, generator=torch.Generator().manual_seed(1))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            G(z, cams, perturb=True, checkpoint_rays=chunk)
        return sum(seen.values())

    assert saved_bytes(32) < 0.7 * saved_bytes(None)


def test_a_chunk_of_no_rays_is_refused_at_config_time():
    with pytest.raises(ValueError, match="ray_chunk"):
        GanTrainingConfig.model_validate({**TINY.model_dump(), "memory": {"ray_chunk": 0}})


@pytest.mark.parametrize("micro", [1, 2])
def test_micro_batches_accumulate_to_the_whole_batchs_step(micro, gan_batch):
    # R1 and density regularisation both due; ADA off (its draws are per micro-batch); D's
    # minibatch-stddev groups of `micro` consecutive images, so a micro-batch holds whole groups
    data = TINY.model_dump()
    data.update(r1_interval=1, density_reg_interval=1, augment={**data["augment"], "mode": "off"})
    data["discriminator"]["mbstd_group_size"] = micro
    whole = GanTrainingConfig.model_validate(data)
    sliced = whole.model_copy(update={"memory": whole.memory.model_copy(update={"micro_batch": micro})})
    a, b = GanTrainer(whole), GanTrainer(sliced)
    metrics_a, metrics_b = a.train_step(gan_batch()), b.train_step(gan_batch())
    for key in ("loss/G", "loss/D", "loss/r1", "loss/density_reg", "D/real", "D/fake"):
        assert metrics_b[key] == pytest.approx(metrics_a[key], rel=1e-4, abs=1e-6), key
    for name in ("G", "D", "G_ema"):
        for (pname, p), q in zip(
            getattr(a, name).named_parameters(), getattr(b, name).parameters(), strict=True
        ):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"{name}.{pname}")
    torch.testing.assert_close(b.G.mapping.w_avg, a.G.mapping.w_avg)


def test_a_micro_batch_that_does_not_divide_the_workers_batch_is_refused():
    data = {**TINY.model_dump(), "batch_size": 8, "workers": 2, "memory": {"micro_batch": 3}}
    with pytest.raises(ValueError, match="micro_batch 3 must divide the per-worker batch 4"):
        GanTrainingConfig.model_validate(data)


def test_a_checkpointed_discriminator_gives_the_same_step_r1_included(gan_batch):
    data = {**TINY.model_dump(), "r1_interval": 1}
    plain = GanTrainer(GanTrainingConfig.model_validate(data))
    data["memory"] = {"checkpoint_discriminator": True, "checkpoint_renderer": True, "ray_chunk": 100}
    saving = GanTrainer(GanTrainingConfig.model_validate(data))
    assert saving.D.checkpoint_blocks and not plain.D.checkpoint_blocks
    a, b = plain.train_step(gan_batch()), saving.train_step(gan_batch())
    assert b["loss/r1"] == pytest.approx(a["loss/r1"], rel=1e-4)
    for name in ("G", "D"):
        for p, q in zip(getattr(plain, name).parameters(), getattr(saving, name).parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # ~75 s of inductor compilation on 2 cores: `pytest -m slow`
def test_the_compiled_decoder_and_synthesis_train_as_eager(gan_batch, tmp_path):
    plain = GanTrainer(TINY)
    compiled = GanTrainer(_memory(compile=True))
    a, b = plain.train_step(gan_batch()), compiled.train_step(gan_batch())
    assert b["loss/G"] == pytest.approx(a["loss/G"], rel=1e-4)
    for p, q in zip(plain.G.parameters(), compiled.G.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
    compiled.save(tmp_path)  # the weights keep their names: the folder loads as any other
    again = GanTrainer(TINY)
    again.load(tmp_path)
    for p, q in zip(again.G.state_dict().values(), compiled.G.state_dict().values(), strict=True):
        assert torch.equal(p, q)
