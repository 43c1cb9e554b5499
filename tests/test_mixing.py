"""Invariants of every mixing policy, reference values, and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mixviz
from mixviz import mixing
from mixviz.mixing import POLICIES, Mix, MixedBatch, available, mix

# Policies with a learned state (AutoMix) need a mixviz model and images >= 4 px; tests/test_automix.py
# checks the same invariants for them.
ALL = sorted(n for n in POLICIES if POLICIES[n].state is None)
IMAGE = [n for n in ALL if POLICIES[n].needs_images]
MASKED = [n for n in ALL if POLICIES[n].has_mask]
STATIC = [n for n in ALL if POLICIES[n].kind == "static"]
NUM_CLASSES = 4


def tiny_cnn(channels: int, num_classes: int = NUM_CLASSES) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes)).train()


def batch(b: int, c: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g), torch.randint(0, NUM_CLASSES, (b,), generator=g)


def run(policy: str, x: torch.Tensor, y: torch.Tensor, seed: int = 0, **kw) -> MixedBatch:
    model = tiny_cnn(x.shape[1]) if POLICIES[policy].kind == "dynamic" else None
    return mix(policy, x, y, generator=torch.Generator().manual_seed(seed), model=model, **kw)


shapes = st.tuples(st.integers(1, 5), st.sampled_from([1, 3]), st.integers(1, 9), st.integers(1, 9))


# --------------------------------------------------------------------------- registry


def test_available_lists_static_and_dynamic_policies():
    assert available() == {
        "none": "static", "mixup": "static", "cutmix": "static", "fmix": "static", "resizemix": "static",
        "gridmix": "static", "smoothmix": "static", "average": "static", "manifold": "static",
        "saliencymix": "dynamic", "puzzlemix": "dynamic", "puzzlemix_lite": "dynamic", "automix": "dynamic"}
    assert {n for n in POLICIES if not POLICIES[n].needs_images} == {"none", "mixup", "average", "manifold"}
    # saliencymix's default saliency is the authors' model-free image saliency
    assert {n for n in POLICIES if POLICIES[n].needs_model} == {"puzzlemix", "puzzlemix_lite", "automix"}
    assert {n for n in POLICIES if POLICIES[n].state is not None} == {"automix"}
    assert {n for n in POLICIES if POLICIES[n].hidden} == {"manifold"}
    assert POLICIES["fmix"].options == {"correct_lam": True, "decay_power": 3.0}
    assert POLICIES["saliencymix"].options["saliency"] == "fine_grained"  # the authors' OpenCV map
    row = POLICIES["cutmix"].as_dict()
    assert row["kind"] == "static" and row["has_mask"] and "fn" not in row


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("policy", ALL)
@settings(max_examples=12, deadline=None)
@given(shape=shapes, alpha=st.floats(0.05, 5.0), seed=st.integers(0, 2**16), per_sample=st.booleans())
def test_invariants(policy, shape, alpha, seed, per_sample):
    x, y = batch(*shape, seed=seed)
    out = run(policy, x, y, seed=seed, alpha=alpha, per_sample=per_sample)
    b = shape[0]
    assert out.policy == policy
    assert out.inputs.shape == x.shape and out.inputs.dtype == x.dtype
    assert torch.equal(out.y_a, y)
    assert torch.equal(out.y_b, y[out.index])
    assert torch.equal(out.index.sort().values, torch.arange(b))  # a permutation
    assert out.lam.shape == (b,) and out.lam.dtype == torch.float32
    assert bool(((out.lam >= 0) & (out.lam <= 1)).all())
    targets = out.soft_targets(NUM_CLASSES)
    torch.testing.assert_close(targets.sum(1), torch.ones(b))
    assert bool((out.inputs >= 0).all() and (out.inputs <= 1).all())  # convex combinations of [0, 1] pixels
    if POLICIES[policy].has_mask:
        assert out.mask.shape == (b, 1, shape[2], shape[3])
        assert bool(((out.mask >= 0) & (out.mask <= 1)).all())
        assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))  # exact, not close
        if POLICIES[policy].exact_lerp:
            expected = out.mask * x + (1 - out.mask) * x[out.index]
            torch.testing.assert_close(out.inputs, expected, rtol=0, atol=1e-6)
    elif POLICIES[policy].hidden:  # mixed inside the network: the inputs stay as they are
        assert out.mask is None and out.inputs is x and out.layer is not None
    else:
        assert out.mask is None
        weight = out.lam.view(-1, 1, 1, 1)
        torch.testing.assert_close(out.inputs, weight * x + (1 - weight) * x[out.index], rtol=0, atol=1e-6)


@pytest.mark.parametrize("policy", ["none", "mixup", "average"])
def test_point_policies_accept_any_shape(policy):
    g = torch.Generator().manual_seed(3)
    for shape in [(5, 2), (3,), (4, 2, 3)]:
        x = torch.randn(*shape, generator=g)
        y = torch.arange(shape[0]) % 2
        out = mix(policy, x, y, generator=g)
        weight = out.lam.view(-1, *([1] * (x.dim() - 1)))
        torch.testing.assert_close(out.inputs, weight * x + (1 - weight) * x[out.index], rtol=0, atol=1e-6)


@pytest.mark.parametrize("policy", ALL)
def test_same_seed_same_batch_other_seed_other_batch(policy):
    x, y = batch(6, 3, 16, 12)
    one, two, other = run(policy, x, y, seed=5), run(policy, x, y, seed=5), run(policy, x, y, seed=6)
    assert torch.equal(one.inputs, two.inputs) and torch.equal(one.lam, two.lam)
    assert torch.equal(one.index, two.index)
    if POLICIES[policy].hidden:  # the inputs are not mixed: the draws differ
        assert not (torch.equal(one.lam, other.lam) and torch.equal(one.index, other.index))
    elif policy != "none":
        assert not torch.equal(one.inputs, other.inputs)


@pytest.mark.parametrize("policy", STATIC)
def test_per_sample_false_gives_one_lam_and_one_mask(policy):
    x, y = batch(7, 3, 10, 14)
    out = run(policy, x, y, seed=2, per_sample=False)
    assert bool((out.lam == out.lam[0]).all())
    if out.mask is not None:
        assert bool((out.mask == out.mask[:1]).all())
    if policy not in ("none", "average"):
        per = run(policy, x, y, seed=2, per_sample=True)
        assert per.lam.unique().numel() > 1


@pytest.mark.parametrize("policy", ALL)
@pytest.mark.parametrize("b", [1, 2, 3])
def test_tiny_and_odd_batches(policy, b):
    x, y = batch(b, 3, 8, 8)
    out = run(policy, x, y, seed=1)
    assert out.inputs.shape == x.shape and out.lam.shape == (b,)
    if b == 1:
        assert torch.equal(out.index, torch.zeros(1, dtype=torch.long))
        if POLICIES[policy].exact_lerp:
            assert torch.equal(out.inputs, x)  # the only partner is itself


@pytest.mark.parametrize("policy", MASKED)
def test_correct_lam_false_keeps_sampled_lam(policy):
    x, y = batch(64, 3, 9, 11)
    kept = run(policy, x, y, seed=4, correct_lam=False)
    fixed = run(policy, x, y, seed=4)
    torch.testing.assert_close(fixed.lam, fixed.mask.mean((1, 2, 3)), rtol=0, atol=0)
    assert torch.equal(kept.inputs, fixed.inputs)
    assert not torch.equal(kept.lam, fixed.lam)


# --------------------------------------------------------------------------- reference values


def test_mixup_against_hand_computation():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    y = torch.tensor([0, 1, 2])
    gen = torch.Generator().manual_seed(11)
    out = mix("mixup", x, y, alpha=0.7, generator=gen)
    # Re-draw by hand with the documented order: randperm, then Beta via boosted Gamma ratio.
    g = torch.Generator().manual_seed(11)
    index = torch.randperm(3, generator=g)
    conc = torch.full((2, 3), 1.7)
    boosted = torch._standard_gamma(conc, generator=g)
    u = 1.0 - torch.rand((2, 3), generator=g)
    g1, g2 = (boosted * u ** (1 / 0.7)).double()
    lam = (g1 / (g1 + g2)).float()
    assert torch.equal(out.index, index)
    torch.testing.assert_close(out.lam, lam, rtol=1e-5, atol=1e-6)
    for i in range(3):
        j = int(index[i])
        want = [float(lam[i]) * float(x[i, k]) + (1 - float(lam[i])) * float(x[j, k]) for k in range(2)]
        torch.testing.assert_close(out.inputs[i], torch.tensor(want), rtol=1e-6, atol=1e-6)
        assert int(out.y_b[i]) == int(y[j])
    targets = out.soft_targets(3)
    for i in range(3):
        want = torch.zeros(3)
        want[int(y[i])] += float(lam[i])
        want[int(y[index[i]])] += 1 - float(lam[i])
        torch.testing.assert_close(targets[i], want)


def test_average_is_plain_mean_with_lam_half():
    x, y = batch(5, 3, 4, 4)
    out = mix("average", x, y, generator=torch.Generator().manual_seed(0), alpha=0.3)
    assert torch.equal(out.lam, torch.full((5,), 0.5))
    torch.testing.assert_close(out.inputs, (x + x[out.index]) / 2, rtol=0, atol=1e-7)


def test_none_is_unmixed():
    x, y = batch(4, 1, 3, 3)
    out = mix("none", x, y)
    ref = MixedBatch.unmixed(x, y)
    assert torch.equal(out.inputs, ref.inputs) and torch.equal(out.lam, ref.lam)
    assert torch.equal(out.index, torch.arange(4)) and torch.equal(out.y_b, y)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_beta_sampler_mean_and_variance(alpha):
    lam = mixing.sample_beta(alpha, 40_000, generator=torch.Generator().manual_seed(0)).double()
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(lam.mean().item() - 0.5) < 4 * math.sqrt(var / lam.numel())
    assert abs(lam.var().item() - var) < 0.05 * var
    assert bool(((lam >= 0) & (lam <= 1)).all()) and not bool(lam.isnan().any())


def test_beta_sampler_small_alpha_has_no_nan():
    lam = mixing.sample_beta(0.01, 20_000, generator=torch.Generator().manual_seed(1))
    assert not bool(lam.isnan().any())
    assert float(((lam < 0.01) | (lam > 0.99)).float().mean()) > 0.9  # Beta(0.01, 0.01) sits at the ends


# --------------------------------------------------------------------------- Mix callable


@pytest.mark.parametrize("policy", ["cutmix", "mixup", "fmix"])
def test_mix_callable_matches_mix(policy):
    x, y = batch(6, 3, 8, 8)
    mixer = Mix(policy, alpha=0.5, num_classes=NUM_CLASSES, generator=torch.Generator().manual_seed(9))
    images, targets = mixer(x, y)
    ref = mix(policy, x, y, alpha=0.5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(images, ref.inputs)
    assert torch.equal(targets, ref.soft_targets(NUM_CLASSES))
    assert targets.shape == (6, NUM_CLASSES) and mixer.last_batch is not None
    assert torch.equal(mixer.last_batch.lam, ref.lam)


def test_mix_callable_keeps_tv_tensors_and_matches_torchvision_api():
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    images = tv_tensors.Image(torch.rand(4, 3, 8, 8))
    labels = torch.tensor([0, 1, 2, 3])
    ours, ours_t = Mix("cutmix", num_classes=NUM_CLASSES)(images, labels)
    theirs, theirs_t = v2.CutMix(num_classes=NUM_CLASSES)(images, labels)
    assert type(ours) is type(theirs) is tv_tensors.Image
    assert ours.shape == theirs.shape and ours_t.shape == theirs_t.shape and ours_t.dtype == theirs_t.dtype


def test_mix_callable_checks():
    with pytest.raises(ValueError, match="model"):
        Mix("puzzlemix", num_classes=3)
    with pytest.raises(TypeError, match="num_classes"):
        Mix("cutmix")  # required, keyword-only (no None default that raises)
    with pytest.raises(ValueError, match="labels"):
        Mix("cutmix", num_classes=3)(torch.rand(2, 3, 4, 4), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="bogus"):
        Mix("cutmix", num_classes=3, bogus=1)
    with pytest.raises(TypeError, match="per_sample"):
        Mix("cutmix", num_classes=3, per_sample=None)
    model = tiny_cnn(3)
    images, targets = Mix("saliencymix", num_classes=NUM_CLASSES, model=model)(*batch(3, 3, 8, 8))
    torch.testing.assert_close(targets.sum(1), torch.ones(3))
    images, targets = Mix("saliencymix", num_classes=NUM_CLASSES)(*batch(3, 3, 8, 8))  # fine-grained: no model
    torch.testing.assert_close(targets.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="model"):
        Mix("saliencymix", num_classes=NUM_CLASSES, saliency="gradient")


# --------------------------------------------------------------------------- bad input


def test_bad_alpha():
    x, y = batch(2, 3, 4, 4)
    for alpha in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            mix("cutmix", x, y, alpha=alpha)
    with pytest.raises(TypeError, match="alpha"):
        mix("mixup", x, y, alpha="1")


def test_unknown_policy_and_option():
    x, y = batch(2, 3, 4, 4)
    with pytest.raises(ValueError, match="policy"):
        mix("cutmixx", x, y)
    with pytest.raises(TypeError, match="policy"):
        mix(3, x, y)
    with pytest.raises(TypeError, match="decay"):
        mix("cutmix", x, y, decay=2)
    with pytest.raises(ValueError, match="decay_power"):
        mix("fmix", x, y, decay_power=-1.0)
    with pytest.raises(ValueError, match="scope"):
        mix("resizemix", x, y, scope=(0.5, 0.2))
    with pytest.raises(TypeError, match="grid"):
        mix("gridmix", x, y, grid=(2, 6))  # the old random-cells option is gone
    with pytest.raises(TypeError, match="n_holes"):
        mix("gridmix", x, y, n_holes=1.5)
    with pytest.raises(TypeError, match="correct_lam"):
        mix("cutmix", x, y, correct_lam=1)


@pytest.mark.parametrize("policy", IMAGE)
def test_image_policies_need_4d(policy):
    x = torch.rand(3, 5)
    with pytest.raises(ValueError, match="x must be a 4-D"):
        mix(policy, x, torch.zeros(3, dtype=torch.long), model=tiny_cnn(3))


def test_bad_x_and_y():
    x, y = batch(3, 3, 4, 4)
    with pytest.raises(ValueError, match="y must have length 3"):
        mix("cutmix", x, y[:2])
    with pytest.raises(TypeError, match="y must be an integer"):
        mix("mixup", x, y.float())
    with pytest.raises(TypeError, match="x must be a floating-point tensor or uint8"):
        mix("mixup", (x * 255).to(torch.int16), y)  # uint8 images are converted (tests/test_input_types.py)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        mix("mixup", x.tolist(), y)
    with pytest.raises(ValueError, match="x must be a non-empty"):
        mix("mixup", x[:0], y[:0])
    with pytest.raises(TypeError, match="per_sample"):
        mix("mixup", x, y, per_sample="yes")
    with pytest.raises(TypeError, match="generator"):
        mix("mixup", x, y, generator=0)


@pytest.mark.parametrize("policy", ALL)
def test_nan_in_x_is_a_value_check(policy):
    x, y = batch(3, 3, 4, 4)
    x[1, 0, 2, 2] = float("nan")
    model = tiny_cnn(3)
    with pytest.raises(ValueError, match="x contains NaN"):
        mix(policy, x, y, model=model)
    with mixviz.validation(False):  # value checks off: no host sync, no error
        mix(policy, x, y, model=model)


@pytest.mark.parametrize("policy", ["saliencymix", "puzzlemix"])
def test_dynamic_without_model(policy):
    x, y = batch(3, 3, 8, 8)
    options = {"saliency": "gradient"} if policy == "saliencymix" else {}  # saliencymix's default needs none
    with pytest.raises(ValueError, match="model is required"):
        mix(policy, x, y, **options)
    with pytest.raises(TypeError, match="model"):
        mix(policy, x, y, model="resnet", **options)


def test_static_policies_ignore_model():
    x, y = batch(3, 3, 8, 8)
    gen = torch.Generator
    a = mix("cutmix", x, y, generator=gen().manual_seed(0), model=tiny_cnn(3))
    b = mix("cutmix", x, y, generator=gen().manual_seed(0))
    assert torch.equal(a.inputs, b.inputs)


def test_soft_targets_helpers_agree_with_one_hot():
    x, y = batch(5, 3, 6, 6)
    out = mix("cutmix", x, y, generator=torch.Generator().manual_seed(0))
    lam = out.lam[:, None]
    want = lam * F.one_hot(y, NUM_CLASSES) + (1 - lam) * F.one_hot(y[out.index], NUM_CLASSES)
    torch.testing.assert_close(out.soft_targets(NUM_CLASSES), want.float())


# --------------------------------------------------------------------------- layouts, dtypes, autograd


@pytest.mark.parametrize("policy", IMAGE)
def test_channels_last_is_kept(policy):
    x, y = batch(4, 3, 8, 8)
    cl = x.contiguous(memory_format=torch.channels_last)
    out = run(policy, cl, y, seed=3)
    ref = run(policy, x, y, seed=3)
    assert out.inputs.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.inputs, ref.inputs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("policy", STATIC)
def test_other_float_dtypes(policy, dtype):
    x, y = batch(3, 3, 6, 6)
    out = run(policy, x.to(dtype), y, seed=0)
    assert out.inputs.dtype == dtype and out.lam.dtype == torch.float32
    if out.mask is not None:
        assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))


@pytest.mark.parametrize("policy", ["mixup", "cutmix", "fmix"])
def test_gradient_flows_to_the_inputs(policy):
    x, y = batch(4, 3, 6, 6)
    x.requires_grad_(True)
    out = run(policy, x, y, seed=0)
    out.inputs.sum().backward()
    # every output pixel is a convex combination with weights summing to 1 over the batch pixels
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(x.numel())))


def test_aux_loss_must_be_a_scalar_tensor():
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    batch = MixedBatch.unmixed(x, y)
    assert batch.aux_loss is None
    with pytest.raises(ValueError, match="aux_loss"):
        MixedBatch(inputs=x, y_a=y, y_b=y, index=torch.arange(4), lam=torch.ones(4), aux_loss=torch.ones(2))
