"""Label noise (mixviz.data.noise), the memorisation metric and the
visible-pair split of mixed Top-1/Top-2 (mixviz.metrics)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mixviz import data, metrics
from mixviz.data.noise import corrupt_labels
from mixviz.mixing import MixedBatch


# --------------------------------------------------------------------------- label noise


@settings(max_examples=30, deadline=None)
@given(st.floats(0.05, 0.9), st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_symmetric_noise_flips_to_another_class(p, classes, seed):
    y = torch.arange(classes).repeat(400)
    noisy = corrupt_labels(y, classes, p, "symmetric", seed=seed)
    flipped = noisy != y
    assert bool(((noisy - y) % classes != 0)[flipped].all())          # never "flips" to itself
    assert noisy.min() >= 0 and noisy.max() < classes
    rate, n = float(flipped.float().mean()), y.numel()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)              # binomial around p


def test_symmetric_noise_is_uniform_over_the_other_classes():
    y = torch.zeros(60000, dtype=torch.int64)
    noisy = corrupt_labels(y, 4, 0.6, "symmetric", seed=3)
    counts = torch.bincount(noisy[noisy != 0], minlength=4)[1:].float()
    share = counts / counts.sum()
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.01)


def test_pair_noise_moves_to_the_next_class():
    y = torch.arange(10).repeat(500)
    noisy = corrupt_labels(y, 10, 0.3, "pair", seed=0)
    flipped = noisy != y
    assert bool((noisy[flipped] == (y[flipped] + 1) % 10).all())
    assert abs(float(flipped.float().mean()) - 0.3) < 0.03


def test_noise_is_deterministic_and_seeded():
    y = torch.arange(10).repeat(100)
    a = corrupt_labels(y, 10, 0.4, seed=5)
    assert torch.equal(a, corrupt_labels(y, 10, 0.4, seed=5))
    assert not torch.equal(a, corrupt_labels(y, 10, 0.4, seed=6))
    assert corrupt_labels(y, 10, 0.0) is y


def test_load_applies_noise_to_the_training_split_only():
    opts = dict(n_train=400, n_test=100, size=16, objects="shapes", label_noise=0.4)
    train = data.load("clutter", "train", **opts)
    test = data.load("clutter", "test", **opts)
    clean = data.load("clutter", "train", n_train=400, n_test=100, size=16, objects="shapes")
    assert torch.equal(train.clean_labels, clean.labels)            # the true labels are kept
    assert torch.equal(train.images, clean.images)                  # the images are untouched
    assert 0.3 < float(train.noisy.float().mean()) < 0.5
    assert train.meta["label_noise"] == 0.4 and train.meta["flipped"] == float(train.noisy.float().mean())
    assert test.clean_labels is test.labels and not bool(test.noisy.any())
    assert clean.clean_labels is clean.labels
    again = data.load("clutter", "train", **opts)
    assert torch.equal(again.labels, train.labels)                 # deterministic given the data seed
    other = data.load("clutter", "train", **{**opts, "seed": 1})
    assert not torch.equal(other.noisy, train.noisy)
    assert data.describe(train)["label_noise"] == float(train.noisy.float().mean())


@pytest.mark.parametrize("name, options", [("moons", dict(n=200)), ("digits", dict(size=8))])
def test_every_in_memory_set_takes_noise(name, options):
    ds = data.load(name, "train", label_noise=0.3, noise_kind="pair", **options)
    assert bool(ds.noisy.any())
    flipped = ds.noisy
    assert bool((ds.labels[flipped] == (ds.clean_labels[flipped] + 1) % ds.num_classes).all())
    moved = ds.to("cpu")
    assert torch.equal(moved.clean_labels, ds.clean_labels)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_noise_rate(p):
    with pytest.raises(ValueError, match="label_noise"):
        data.load("moons", "train", n=50, label_noise=p)


def test_bad_noise_kind_and_folder_sets(tmp_path):
    with pytest.raises(ValueError, match="noise_kind"):
        data.load("moons", "train", n=50, label_noise=0.2, noise_kind="asymmetric")
    with pytest.raises(TypeError, match="label_noise"):
        data.load("moons", "train", n=50, label_noise="0.2")
    with pytest.raises(ValueError, match="in-memory"):
        data.load("imagefolder", "train", root=tmp_path, label_noise=0.2)


# --------------------------------------------------------------------------- memorisation


def test_memorisation_on_a_hand_made_case():
    clean = torch.tensor([0, 1, 2, 0, 1, 2])
    noisy = torch.tensor([1, 1, 0, 0, 2, 2])      # samples 0, 2, 4 flipped
    pred = torch.tensor([1, 1, 2, 0, 0, 2])       # 0: memorised; 2: still right; 4: neither; rest fit
    logits = torch.nn.functional.one_hot(pred, 3).float() * 5
    m = metrics.memorisation(logits, noisy, clean)
    assert m["memorised"] == pytest.approx(1 / 3)
    assert m["still_right"] == pytest.approx(1 / 3)
    assert m["clean_fit"] == pytest.approx(1.0)
    assert m["noisy_share"] == pytest.approx(0.5)


def test_memorisation_without_noise_is_nan():
    y = torch.tensor([0, 1])
    m = metrics.memorisation(torch.eye(2), y, y)
    assert math.isnan(m["memorised"]) and math.isnan(m["still_right"]) and m["clean_fit"] == 1.0


# --------------------------------------------------------------------------- visible-pair Top-2


def _objects():
    # 4 images of 4x4, object masks: a 2x2 block in the top-left (0, 2), the whole top half (1), the right half (3)
    o = torch.zeros(4, 1, 4, 4)
    o[0, :, :2, :2] = 1
    o[1, :, :2, :] = 1
    o[2, :, :2, :2] = 1
    o[3, :, :, 2:] = 1
    return o


def test_visible_pair_split_on_hand_made_masks():
    objects = _objects()
    index = torch.tensor([1, 0, 3, 2])
    mask = torch.ones(4, 1, 4, 4)
    mask[0, :, :, 2:] = 0        # a keeps the left half: a's object whole, b's object (top half) half visible
    mask[1, :, :2, :2] = 0       # a = object 1 loses its left top quarter (half of it); b = object 0 fully visible
    mask[2] = 0                  # a = object 2 gone, b = object 3 whole
    mask[3, :, :, :2] = 0        # a = object 3 (right half) whole; b = object 2 (top left) whole
    mixed = MixedBatch(inputs=torch.zeros(4, 1, 4, 4), y_a=torch.tensor([0, 1, 2, 3]),
                       y_b=torch.tensor([1, 0, 3, 2]), index=index, lam=mask.mean((1, 2, 3)), mask=mask,
                       policy="cutmix")
    vis_a, vis_b = metrics.object_visibility(mixed, objects, min_weight=0.25)
    assert vis_a.tolist() == [1.0, 0.5, 0.0, 1.0] and vis_b.tolist() == [0.5, 1.0, 1.0, 1.0]
    # logits: sample 0 names {0, 1} (right), 1 names {1, 2} (wrong), 2 names {3, 2}, 3 names {2, 0}
    top = torch.tensor([[0, 1], [1, 2], [3, 2], [2, 0]])
    logits = torch.zeros(4, 4).scatter_(1, top, torch.tensor([[3.0, 2.0]] * 4))
    split = metrics.mixed_topk_by_visibility(logits, mixed, objects)
    assert split["n_both"] == 3 and split["n_one"] == 1
    assert split["top2_both"] == pytest.approx(1 / 3) and split["top1_both"] == 1.0
    assert split["top2_one"] == 1.0 and split["top1_one"] == 1.0
    # a hard mask: the threshold changes nothing
    assert torch.equal(metrics.object_visibility(mixed, objects)[0], vis_a)


def test_visible_pair_split_for_mixup_uses_the_share():
    objects = _objects()
    lam = torch.tensor([0.5, 0.1, 0.8, 0.3])
    mixed = MixedBatch(inputs=torch.zeros(4, 1, 4, 4), y_a=torch.tensor([0, 1, 2, 3]), y_b=torch.tensor([1, 0, 3, 2]),
                       index=torch.tensor([1, 0, 3, 2]), lam=lam, policy="mixup")
    vis_a, vis_b = metrics.object_visibility(mixed, objects, min_weight=0.25)
    assert vis_a.tolist() == [1.0, 0.0, 1.0, 1.0] and vis_b.tolist() == [1.0, 1.0, 0.0, 1.0]
    split = metrics.mixed_topk_by_visibility(torch.randn(4, 4), mixed, objects)
    assert split["n_both"] == 2 and split["n_one"] == 2
    # without a threshold the old reading (the share itself) is unchanged
    assert torch.equal(metrics.object_visibility(mixed, objects)[0], lam)


def test_visible_pair_split_empty_groups_and_bad_options():
    objects = _objects()
    y = torch.tensor([0, 1, 2, 3])
    mixed = MixedBatch.unmixed(torch.zeros(4, 1, 4, 4), y)
    split = metrics.mixed_topk_by_visibility(torch.randn(4, 4), mixed, objects)
    assert split["n_both"] == 0 and math.isnan(split["top2_both"])
    with pytest.raises(ValueError, match="visible"):
        metrics.mixed_topk_by_visibility(torch.randn(4, 4), mixed, objects, visible=1.5)
    with pytest.raises(ValueError, match="min_weight"):
        metrics.object_visibility(mixed, objects, min_weight=0)
