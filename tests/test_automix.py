"""AutoMix: the MixBlock, the policy's losses and stop-gradients, the EMA, fit / resume / load_run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mixviz import losses, mixing, models, runs, viz
from mixviz.mixing import AutoMixPolicy, MixBlock, mix
from mixviz.train import TrainConfig, fit

TINY = dict(dataset="clutter", model="smallcnn", policy="automix", loss="mixup_ce", alpha=2.0, epochs=2,
            batch_size=16, lr=0.05, seed=2, device="cpu", progress=False,
            dataset_options=dict(n_train=64, n_test=32, size=16), model_options=dict(width=8))


def _classifier(size: int = 16, seed: int = 0, name: str = "smallcnn") -> nn.Module:
    torch.manual_seed(seed)
    return models.build(name, 5, (3, size, size), width=4).train()


def _state(size: int = 16, seed: int = 0, **options) -> AutoMixPolicy:
    return mixing.build_state("automix", _classifier(size, seed), **options)


def _batch(b: int = 6, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.randint(0, 5, (b,), generator=g)


# --------------------------------------------------------------------------- MixBlock


def _mixblock_by_hand(block: MixBlock, a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor,
                      size: tuple[int, int]) -> np.ndarray:
    """The MixBlock's formula with explicit loops over positions, in float64."""
    wq = block.query.weight.detach().double()[:, :, 0, 0].numpy()
    bq = block.query.bias.detach().double().numpy()
    wv = block.value.weight.detach().double()[:, :, 0, 0].numpy()
    bv = block.value.bias.detach().double().numpy()
    n, _, h, w = a.shape
    out = np.zeros((n, 1, *size))
    for s in range(n):
        fa = a[s].double().reshape(a.shape[1], h * w).numpy()
        fb = b[s].double().reshape(b.shape[1], h * w).numpy()
        if block.lam_concat:
            fa = np.vstack([fa, np.full((1, h * w), float(lam[s]))])
            fb = np.vstack([fb, np.full((1, h * w), 1 - float(lam[s]))])
        q, k, v = wq @ fa + bq[:, None], wq @ fb + bq[:, None], (wv @ fb + bv[:, None])[0]
        logit = np.zeros(h * w)
        for i in range(h * w):
            scores = np.array([q[:, i] @ k[:, j] for j in range(h * w)]) / math.sqrt(q.shape[0])
            p = np.exp(scores - scores.max())
            logit[i] = (p / p.sum()) @ v
        for r in range(size[0]):
            for c in range(size[1]):
                z = logit[(r * h // size[0]) * w + c * w // size[1]]  # nearest
                out[s, 0, r, c] = 1 - 1 / (1 + math.exp(-z))          # share of a = 1 - sigmoid
    return out


@pytest.mark.parametrize("lam_concat", [False, True])
def test_mixblock_matches_the_formula(lam_concat):
    torch.manual_seed(0)
    block = MixBlock(6, lam_concat=lam_concat)
    for conv in (block.query, block.value):  # larger weights than the init, so the attention is not flat
        nn.init.normal_(conv.weight, 0.0, 0.5)
        nn.init.normal_(conv.bias, 0.0, 0.5)
    a, b = torch.randn(2, 6, 3, 2), torch.randn(2, 6, 3, 2)
    lam = torch.tensor([0.2, 0.7])
    got = block(a, b, lam, (6, 4))
    assert got.shape == (2, 1, 6, 4) and got.dtype == torch.float32
    np.testing.assert_allclose(got.detach().numpy(), _mixblock_by_hand(block, a, b, lam, (6, 4)), rtol=1e-5,
                               atol=1e-6)


def test_mixblock_at_init_is_close_to_half_and_blocky():
    torch.manual_seed(1)
    block = MixBlock(32)
    feat = torch.randn(4, 32, 8, 8)
    mask = block(feat, feat.flip(0), torch.full((4,), 0.5), (32, 32))
    assert bool(((mask > 0.45) & (mask < 0.55)).all())
    # nearest upsampling: constant on the 4 x 4 pixel blocks of each feature position
    blocks = mask.view(4, 1, 8, 4, 8, 4)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert block.inner == 16 and block.query.weight.shape == (16, 32, 1, 1)
    assert block.value.weight.shape == (1, 32, 1, 1)


# --------------------------------------------------------------------------- the policy


STATE = _state()


@pytest.mark.parametrize("training", [True, False])
@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 5), size=st.sampled_from([8, 12, 16]), seed=st.integers(0, 2**16),
       alpha=st.floats(0.1, 4.0), per_sample=st.booleans())
def test_invariants(training, b, size, seed, alpha, per_sample):
    x, y = _batch(b, size, seed)
    STATE.train(training)
    out = mix("automix", x, y, alpha=alpha, generator=torch.Generator().manual_seed(seed), per_sample=per_sample,
              model=STATE)
    assert out.policy == "automix" and out.layer is None
    assert out.inputs.shape == x.shape and out.mask.shape == (b, 1, size, size)
    assert torch.equal(out.index.sort().values, torch.arange(b)) and torch.equal(out.y_b, y[out.index])
    assert bool(((out.mask >= 0) & (out.mask <= 1)).all())
    assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))  # exact: lam is the share of a shown
    torch.testing.assert_close(out.inputs, out.mask * x + (1 - out.mask) * x[out.index], rtol=0, atol=1e-6)
    assert not out.mask.requires_grad and not out.inputs.requires_grad
    if training:
        assert out.aux_loss.dim() == 0 and bool(torch.isfinite(out.aux_loss)) and out.aux_loss.requires_grad
    else:
        assert out.aux_loss is None


def test_same_seed_same_batch_and_the_partners_of_every_policy():
    x, y = _batch(8)
    state = _state().eval()
    one = mix("automix", x, y, generator=torch.Generator().manual_seed(5), model=state)
    two = mix("automix", x, y, generator=torch.Generator().manual_seed(5), model=state)
    cut = mix("cutmix", x, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.mask, two.mask)
    assert torch.equal(one.index, cut.index)  # the gallery compares like with like


def test_lam_margin_makes_the_backbone_mask_constant():
    x, y = _batch(64)
    state = _state()
    out = mix("automix", x, y, alpha=0.1, generator=torch.Generator().manual_seed(3), model=state)
    g = torch.Generator().manual_seed(3)  # the documented order: permutation, then lam
    torch.randperm(64, generator=g)
    lam = mixing.sample_beta(0.1, 64, generator=g)
    edge = (lam <= 0.08) | (lam >= 0.92)
    assert 0 < int(edge.sum()) < 64
    flat = out.mask.flatten(1)
    assert torch.equal(flat[edge], lam[edge, None].expand(-1, flat.shape[1]))
    assert bool((flat[~edge].std(1) > 0).all())
    off = mix("automix", x, y, alpha=0.1, generator=torch.Generator().manual_seed(3),
              model=_state(lam_margin=0.0))
    assert bool((off.mask.flatten(1)[edge].std(1) > 0).all())


@pytest.mark.parametrize("per_sample", [True, False])
def test_learning_signal_is_generation_plus_mask_plus_clean_loss(per_sample):
    x, y = _batch(6)
    state = _state(mask_margin=0.05)
    index = torch.tensor([3, 4, 5, 0, 1, 2])
    lam = torch.tensor([0.2, 0.9, 0.5, 0.4, 0.6, 0.3]) if per_sample else torch.tensor([0.3])
    mask = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    got = state.learning_signal(x, y, index, lam, mask)
    lam_b = lam.expand(6)
    logp = F.log_softmax(state.ema(mask * x + (1 - mask) * x[index]), 1)
    generation = -(lam_b * logp[torch.arange(6), y] + (1 - lam_b) * logp[torch.arange(6), y[index]]).mean()
    if per_sample:
        mask_term = 0.1 * (mask.mean((1, 2, 3)) - lam).abs().sub(0.05).clamp_min(0).mean()
    else:
        mask_term = 0.1 * max(abs(float(mask.mean()) - 0.3) - 0.05, 0.0)
    clean = F.cross_entropy(state.classifier(x), y)
    torch.testing.assert_close(got, generation + mask_term + clean, rtol=1e-5, atol=1e-6)


def test_stop_gradients():
    """The mixed-image loss trains the classifier only; the generation and mask
    losses reach the MixBlock only (through the frozen EMA); the clean CE the classifier."""
    x, y = _batch(8)
    state = _state(mask_loss=0.0)
    model = state.classifier
    out = mix("automix", x, y, alpha=2.0, generator=torch.Generator().manual_seed(0), model=state)
    losses.build("mixup_ce", num_classes=5)(mixing.forward(model, out), out).backward()
    assert all(p.grad is None for p in state.parameters())
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=True)
    out.aux_loss.backward()
    assert all(p.grad is None for p in state.ema.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in state.mix_block.parameters())
    from_aux = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()  # the clean CE alone gives the classifier's part
    for a, p in zip(from_aux, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)


def test_ema_network_is_frozen_uses_batch_statistics_in_training_and_its_own_in_eval():
    x, y = _batch(8)
    state = _state()
    bn = state.ema[1].features[0][1]
    before = bn.running_mean.clone()
    mix("automix", x, y, generator=torch.Generator().manual_seed(0), model=state)
    assert not torch.equal(bn.running_mean, before)  # train mode: the EMA's BatchNorm buffers move
    state.eval()
    frozen = bn.running_mean.clone()
    out = mix("automix", x, y, generator=torch.Generator().manual_seed(0), model=state)
    assert torch.equal(bn.running_mean, frozen) and out.aux_loss is None
    assert all(not p.requires_grad for p in state.ema.parameters())
    assert {n.split(".")[0] for n in state.state_dict()} == {"mix_block", "ema"}  # not the classifier


def test_momentum_schedule_reference_values():
    state = _state()
    assert state.momentum_at(0, 1000) == 0.999 and state.momentum_at(99, 1000) == 0.999
    assert state.momentum_at(100, 1000) == pytest.approx(0.999999 - 0.000999 * (math.cos(0.1 * math.pi) + 1) / 2,
                                                         abs=1e-12)
    assert state.momentum_at(100, 1000) == pytest.approx(0.9990245, abs=1e-7)
    assert state.momentum_at(500, 1000) == pytest.approx((0.999 + 0.999999) / 2, abs=1e-12)
    assert state.momentum_at(1000, 1000) == pytest.approx(0.999999, abs=1e-12)
    assert state.momentum_at(5000, 1000) == pytest.approx(0.999999, abs=1e-12)
    assert state.momentum_at(10, None) == 0.999
    values = [state.momentum_at(t, 1000) for t in range(0, 1001, 25)]
    assert values == sorted(values)


def test_after_step_is_the_ema_of_the_parameters_only():
    state = _state()
    model = state.classifier
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].features[0][1].running_mean.add_(1.0)
    before = [p.clone() for p in state.ema.parameters()]
    buffers = {n: b.clone() for n, b in state.ema.named_buffers()}
    state.after_step(500, 1000)
    m = state.momentum_at(500, 1000)
    for old, new, online in zip(before, state.ema.parameters(), model.parameters()):
        torch.testing.assert_close(new, m * old + (1 - m) * online, rtol=0, atol=1e-7)
    for n, b in state.ema.named_buffers():
        assert torch.equal(b, buffers[n]), n


# --------------------------------------------------------------------------- arguments


def test_automix_needs_its_state():
    x, y = _batch(4)
    with pytest.raises(ValueError, match="model is required.*build_state"):
        mix("automix", x, y)
    with pytest.raises(ValueError, match="model must be the AutoMix state.*got a"):
        mix("automix", x, y, model=_classifier())
    with pytest.raises(TypeError, match="'lam_margin'.*build_state"):
        mix("automix", x, y, model=STATE, lam_margin=0.1)
    with pytest.raises(TypeError, match="'bogus'"):
        mix("automix", x, y, model=STATE, bogus=1)
    with pytest.raises(ValueError, match="4-D image batch"):
        mix("automix", torch.rand(4, 6), y, model=STATE)
    assert mixing.build_state("cutmix", _classifier()) is None
    assert mixing.split_options("automix", {"per_sample": False, "momentum": 0.99}) == (
        {"momentum": 0.99}, {"per_sample": False})


@pytest.mark.parametrize("options,match", [
    (dict(momentum=1.5), "momentum"), (dict(momentum_end=0.9), "momentum_end"),
    (dict(momentum_warmup=-0.1), "momentum_warmup"), (dict(mask_loss=-1.0), "mask_loss"),
    (dict(mask_margin=-0.1), "mask_margin"), (dict(lam_margin=0.5), "lam_margin"), (dict(layer=0), "layer"),
    (dict(layer=4), "layer"), (dict(layer=1.5), "layer"), (dict(upsample="area"), "upsample"),
    (dict(reduction=0), "reduction"), (dict(lam_concat=1), "lam_concat"),
])
def test_bad_state_options_name_the_option(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mixing.build_state("automix", _classifier(), **options)


def test_models_without_feature_maps_are_refused():
    with pytest.raises(ValueError, match="mlp, smallcnn or preact_resnet18.*ResNet"):
        mixing.build_state("automix", models.build("resnet18", 3, (3, 16, 16)))
    mlp_state = mixing.build_state("automix", models.build("mlp", 5, (3 * 8 * 8,), hidden=8))
    with pytest.raises(ValueError, match="convolutional model"):
        mix("automix", *_batch(4, size=8), model=mlp_state)
    with pytest.raises(ValueError, match="DistributedDataParallel|eval_policy"):
        TrainConfig(**{**TINY, "eval_policy": "automix"})


def test_the_default_feature_layer_is_8x8_at_32_pixels():
    for name in ("smallcnn", "preact_resnet18"):
        state = mixing.build_state("automix", _classifier(32, name=name))
        assert tuple(state.features(torch.rand(2, 3, 32, 32)).shape[-2:]) == (8, 8), name
    assert mixing.build_state("automix", _classifier(32, name="preact_resnet18")).layer == 3


# --------------------------------------------------------------------------- training



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("automix") / "a"
    config = TrainConfig(**{**TINY, "out_dir": str(path)})
    return config, fit(config), path


def test_fit_trains_the_mixer_end_to_end(trained):
    config, run, path = trained
    assert np.isfinite(run.history["train_loss"]).all() and len(run.history) == 2
    state = run.policy_state
    assert isinstance(state, AutoMixPolicy) and state.classifier is run.model and run.mixer is state
    assert not state.training  # like a loaded run's: the figures of a fresh run are the same
    for bias in (state.mix_block.query.bias, state.mix_block.value.bias):  # both start at 0
        assert bool((bias != 0).all())
    ema = dict(state.ema.named_parameters())
    online = dict(run.model.named_parameters())
    assert all(not torch.equal(ema[n], online[n]) for n in online)  # it lags behind the classifier
    ckpt = torch.load(path / "checkpoint.pt", weights_only=True)
    assert set(ckpt["policy_state"]) == set(state.state_dict())


def test_exact_resume_restores_the_mixer(trained, tmp_path, crashed_and_resumed):
    config, unbroken, _ = trained
    resumed = crashed_and_resumed(config, tmp_path / "b")
    for part in ("model", "policy_state", "criterion"):
        a, b = getattr(unbroken, part).state_dict(), getattr(resumed, part).state_dict()
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), (part, name)
    assert resumed.history["train_loss"].tolist() == unbroken.history["train_loss"].tolist()


def test_load_run_rebuilds_the_trained_mixer_for_the_figures(trained):
    _, run, path = trained
    loaded = runs.load_run(path)
    state = loaded.policy_state
    assert isinstance(state, AutoMixPolicy) and not state.training and loaded.mixer is state
    assert state.classifier is loaded.model
    for name, value in run.policy_state.state_dict().items():
        assert torch.equal(state.state_dict()[name], value), name
    from mixviz import data

    test = data.load("clutter", "test", **TINY["dataset_options"])
    x, y = test.images[:8], test.labels[:8]
    batch = mix("automix", x, y, generator=torch.Generator().manual_seed(0), model=loaded.mixer)
    assert batch.aux_loss is None and float(batch.mask.flatten(1).std(1).max()) > 0
    fig = viz.mixed_samples_gallery({"automix": batch}, n=2)
    assert len(fig.axes) == 2 * 2 + 1  # image, mask, colour bar
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), batch.mask[0, 0].numpy())


def test_make_step_needs_the_state():
    from mixviz.bench import time_methods
    from mixviz.train import make_step

    with pytest.raises(ValueError, match="state is required"):
        make_step(TrainConfig(**TINY), None, None, None, None, None, None, amp=False, channels_last=False,
                  augment=False)
    table = time_methods((("mixup", "mixup_ce"), ("automix", "mixup_ce"), ("manifold", "mixup_ce")),
                         in_shape=(3, 16, 16), batch_size=16, steps=1, rounds=1, device="cpu",
                         model_options=dict(width=4))
    assert list(table.policy) == ["mixup", "automix", "manifold"] and (table.sec_per_step > 0).all()


@pytest.mark.slow
def test_two_gloo_ranks_keep_one_mixer(tmp_path):
    """Under DistributedDataParallel every rank ends with the same MixBlock and EMA weights."""
    script = tmp_path / "ddp_automix.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch, torch.distributed as dist
        from mixviz.train import TrainConfig, fit
        dist.init_process_group("gloo")
        cfg = TrainConfig(**{dict(TINY, epochs=1)!r})
        run = fit(cfg)
        # parameters only: each rank's EMA BatchNorm buffers follow its own shard (used in eval mode only)
        flat = torch.cat([p.flatten() for p in run.policy_state.parameters()]
                         + [p.flatten() for p in run.model.parameters()])
        both = [torch.zeros_like(flat) for _ in range(2)]
        dist.all_gather(both, flat)
        if dist.get_rank() == 0:
            print("SAME", torch.equal(both[0], both[1]), run.metrics["world_size"], flush=True)
        dist.barrier()
        dist.destroy_process_group()
        # leave without interpreter teardown: on a loaded 2-core machine gloo's threads once raced it and one
        # rank aborted ("terminate called without an active exception") after the check had passed
        os._exit(0)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SAME True 2" in proc.stdout
