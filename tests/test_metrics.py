"""Tests of mixviz.metrics: reference values, torchmetrics agreement, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mixviz
from mixviz import metrics
from mixviz.mixing.batch import MixedBatch


def _random_probs(n: int, c: int, seed: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probs = (torch.randn(n, c, generator=g) * temperature).softmax(dim=1)
    labels = torch.randint(0, c, (n,), generator=g)
    return probs, labels


# --------------------------------------------------------------------------- accuracy, nll, brier


def test_accuracy_reference_values():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0],
                           [0.0, 1.0, 3.0, 2.0],
                           [1.0, 0.0, 2.0, 3.0]])
    labels = torch.tensor([0, 3, 0])
    # sample 0: rank 1; sample 1: rank 2; sample 2: rank 3
    assert metrics.accuracy(logits, labels, topk=(1, 2, 3)) == pytest.approx((1 / 3, 2 / 3, 1.0))
    assert metrics.accuracy(logits, labels, topk=2) == pytest.approx((2 / 3,))


def test_accuracy_clamps_k_to_number_of_classes():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    top1, top5 = metrics.accuracy(logits, labels)  # default (1, 5), C = 3
    assert top1 == 0.0
    assert top5 == 1.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), c=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_accuracy_matches_per_sample_rank(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    labels = torch.randint(0, c, (n,), generator=g)
    ks = (1, 2, 5)
    got = metrics.accuracy(logits, labels, topk=ks)
    # rank of the true class = number of logits strictly larger (no ties with randn)
    rank = (logits > logits.gather(1, labels[:, None])).sum(1)
    want = tuple(float((rank < min(k, c)).float().mean()) for k in ks)
    assert got == pytest.approx(want)


def test_nll_and_brier_reference_values():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # softmax: [3/4, 1/4], [1/2, 1/2]
    labels = torch.tensor([0, 1])
    assert metrics.nll(logits, labels) == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, abs=1e-6)
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    # per sample: 0, 0.25 + 0.25 = 0.5, 1 + 1 = 2  -> mean 2.5 / 3
    assert metrics.brier_score(probs, labels) == pytest.approx(2.5 / 3)


def test_nll_matches_torch_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 7, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 7, (50,), generator=g)
    assert metrics.nll(logits, labels) == pytest.approx(float(F.cross_entropy(logits, labels)), abs=1e-6)


# --------------------------------------------------------------------------- calibration


@pytest.mark.parametrize("n_bins", [15, 4])
@pytest.mark.parametrize("temperature", [0.5, 3.0, 20.0])
def test_ece_and_mce_agree_with_torchmetrics(n_bins, temperature):
    from torchmetrics.classification import MulticlassCalibrationError

    probs, labels = _random_probs(500, 10, seed=int(temperature * 10) + n_bins, temperature=temperature)
    for norm, fn in (("l1", metrics.expected_calibration_error), ("max", metrics.maximum_calibration_error)):
        reference = MulticlassCalibrationError(num_classes=10, n_bins=n_bins, norm=norm)(probs, labels)
        assert fn(probs, labels, n_bins=n_bins) == pytest.approx(float(reference), abs=1e-6)


def test_ece_reference_value():
    # two bins: [0, .5) and [.5, 1); confidences .4 (wrong), .6 (right), .8 (wrong), .9 (right)
    probs = torch.tensor([[0.4, 0.3, 0.3], [0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0]])
    labels = torch.tensor([1, 0, 1, 1])
    # bin 0: conf .4, acc 0 -> .4 * 1/4; bin 1: conf (.6+.8+.9)/3, acc 2/3 -> 3/4 * |2/3 - 2.3/3|
    want = 0.4 / 4 + 0.75 * abs(2 / 3 - 2.3 / 3)
    assert metrics.expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(want, abs=1e-6)
    assert metrics.maximum_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.4, abs=1e-6)


def test_reliability_bins_hand_example():
    probs = torch.tensor([[0.4, 0.3, 0.3], [0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0]])
    labels = torch.tensor([1, 0, 1, 1])
    table = metrics.reliability_bins(probs, labels, n_bins=4)
    assert list(table.columns) == ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]
    assert table["bin_lower"].tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert table["bin_upper"].tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert table["count"].tolist() == [0, 1, 1, 2, 0]
    assert np.isnan(table["confidence"][0]) and np.isnan(table["accuracy"][0])
    assert np.isnan(table["confidence"][4]) and np.isnan(table["accuracy"][4])
    assert table["confidence"][1:4].tolist() == pytest.approx([0.4, 0.6, 0.85])
    assert table["accuracy"][1:4].tolist() == pytest.approx([0.0, 1.0, 0.5])


@pytest.mark.parametrize("temperature", [1.0, 8.0, 200.0])
def test_reliability_bins_add_up_to_ece(temperature):
    # temperature 200 saturates float32 softmax: many confidences are exactly 1.0
    probs, labels = _random_probs(400, 5, seed=3, temperature=temperature)
    table = metrics.reliability_bins(probs, labels)
    assert len(table) == 16
    assert table["count"].sum() == 400
    full = table[table["count"] > 0]
    from_bins = float((full["count"] / 400 * (full["accuracy"] - full["confidence"]).abs()).sum())
    assert from_bins == pytest.approx(metrics.expected_calibration_error(probs, labels), abs=1e-6)
    assert float((full["accuracy"] - full["confidence"]).abs().max()) == pytest.approx(
        metrics.maximum_calibration_error(probs, labels), abs=1e-6)
    if temperature == 200.0:
        assert table["count"].iloc[-1] > 0  # the exact-1.0 bin is used


def test_calibration_argument_errors():
    probs, labels = _random_probs(10, 3, seed=0)
    with pytest.raises(ValueError, match="n_bins"):
        metrics.expected_calibration_error(probs, labels, n_bins=0)
    with pytest.raises(TypeError, match="n_bins"):
        metrics.reliability_bins(probs, labels, n_bins=2.5)
    with pytest.raises(ValueError, match="probs"):
        metrics.expected_calibration_error(probs * 3, labels)
    with pytest.raises(TypeError, match="probs"):
        metrics.brier_score(labels[:, None].expand(10, 3), labels)
    with pytest.raises(ValueError, match="labels"):
        metrics.expected_calibration_error(probs, labels[:5])
    with pytest.raises(ValueError, match="labels"):
        metrics.brier_score(probs, labels + 3)


def test_argument_errors_name_the_argument():
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="logits"):
        metrics.accuracy(logits.numpy(), labels)
    with pytest.raises(ValueError, match="logits"):
        metrics.nll(logits[0], labels)
    with pytest.raises(ValueError, match="logits"):
        metrics.nll(torch.full((4, 3), float("nan")), labels)
    with pytest.raises(TypeError, match="labels"):
        metrics.accuracy(logits, labels.float())
    with pytest.raises(ValueError, match="topk"):
        metrics.accuracy(logits, labels, topk=(1, 0))
    with pytest.raises(ValueError, match="y_b"):
        metrics.mixed_topk_accuracy(logits, labels, labels + 5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        metrics.mixed_topk_accuracy(torch.randn(4, 1), torch.zeros(4, dtype=torch.long),
                                    torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------- mixed Top-1 / Top-2


def test_mixed_topk_accuracy_reference():
    logits = torch.tensor([
        [5.0, 4.0, 0.0, 0.0],   # top {0, 1}
        [5.0, 0.0, 4.0, 0.0],   # top {0, 2}
        [0.0, 0.0, 4.0, 5.0],   # top {3, 2}
        [5.0, 0.0, 0.0, 4.0],   # top {0, 3}, pair with equal labels
        [0.0, 5.0, 0.0, 4.0],   # top {1, 3}
    ])
    y_a = torch.tensor([1, 0, 1, 0, 2])
    y_b = torch.tensor([0, 1, 3, 0, 0])
    # Top-1: hits 1, 1, 1 (3 in {1, 3}), 1, 0 -> 4/5
    # Top-2 over distinct pairs 0, 1, 2, 4: exact {0,1}: yes; {0,2} vs {0,1}: no; {2,3} vs {1,3}: no; no
    top1, top2 = metrics.mixed_topk_accuracy(logits, y_a, y_b)
    assert top1 == pytest.approx(4 / 5)
    assert top2 == pytest.approx(1 / 4)


def test_mixed_topk_accuracy_all_pairs_equal_gives_nan_top2():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    y = torch.tensor([0, 1])
    top1, top2 = metrics.mixed_topk_accuracy(logits, y, y)
    assert top1 == 0.5
    assert math.isnan(top2)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), c=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_mixed_topk_accuracy_matches_loop_reference(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    y_a = torch.randint(0, c, (n,), generator=g)
    y_b = torch.randint(0, c, (n,), generator=g)
    order = logits.argsort(dim=1, descending=True).tolist()
    hits1 = [order[i][0] in (int(y_a[i]), int(y_b[i])) for i in range(n)]
    hits2 = [set(order[i][:2]) == {int(y_a[i]), int(y_b[i])} for i in range(n) if y_a[i] != y_b[i]]
    top1, top2 = metrics.mixed_topk_accuracy(logits, y_a, y_b)
    assert top1 == pytest.approx(sum(hits1) / n)
    if hits2:
        assert top2 == pytest.approx(sum(hits2) / len(hits2))
    else:
        assert math.isnan(top2)


# --------------------------------------------------------------------------- summary


def test_summary_keys_and_values():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(64, 10, generator=g) * 3
    labels = torch.randint(0, 10, (64,), generator=g)
    out = metrics.summary(logits, labels)
    assert set(out) == {"test_acc", "top5", "nll", "ece", "mce", "brier"}
    assert all(isinstance(v, float) for v in out.values())
    probs = logits.softmax(1)
    assert (out["test_acc"], out["top5"]) == pytest.approx(metrics.accuracy(logits, labels))
    assert out["ece"] == pytest.approx(metrics.expected_calibration_error(probs, labels))
    assert out["mce"] == pytest.approx(metrics.maximum_calibration_error(probs, labels))
    assert out["brier"] == pytest.approx(metrics.brier_score(probs, labels))
    assert out["nll"] == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert metrics.summary(logits[:, :3], labels % 3)["top5"] == 1.0


# --------------------------------------------------------------------------- object visibility, label mismatch


def _batch(mask: torch.Tensor | None, lam, index, y_a, y_b, policy="cutmix") -> MixedBatch:
    b = len(index)
    inputs = torch.zeros(b, 1, 4, 4)
    return MixedBatch(inputs=inputs, y_a=torch.tensor(y_a), y_b=torch.tensor(y_b), index=torch.tensor(index),
                      lam=torch.tensor(lam, dtype=torch.float32), mask=mask, policy=policy)


def _hand_made():
    """Two 4x4 samples. Object 0: the left half (8 px). Object 1: the top-left 2x2 square (4 px).
    The mask keeps the right half of each sample a (lam = 0.5) and pastes the partner's left half."""
    objects = torch.zeros(2, 1, 4, 4)
    objects[0, 0, :, :2] = 1
    objects[1, 0, :2, :2] = 1
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, 0, :, 2:] = 1
    return objects, mask


def test_object_visibility_hand_made_masks():
    objects, mask = _hand_made()
    mask[1, 0, 0, 0] = 1  # sample 1 also keeps one of its own object pixels
    mixed = _batch(mask, [0.5, 9 / 16], [1, 0], [0, 1], [1, 0])
    vis_a, vis_b = metrics.object_visibility(mixed, objects)
    # sample 0: its object (left half) is fully replaced -> 0; partner object 1 lies in the pasted left half -> 1
    # sample 1: keeps 1 of its 4 object pixels -> 1/4; partner object 0 (8 px) pasted except pixel (0, 0) -> 7/8
    assert vis_a.tolist() == pytest.approx([0.0, 0.25])
    assert vis_b.tolist() == pytest.approx([1.0, 7 / 8])


def test_object_visibility_without_mask_is_lam():
    objects, _ = _hand_made()
    mixed = _batch(None, [0.7, 0.2], [1, 0], [0, 1], [1, 0], policy="mixup")
    vis_a, vis_b = metrics.object_visibility(mixed, objects)
    assert vis_a.tolist() == pytest.approx([0.7, 0.2])
    assert vis_b.tolist() == pytest.approx([0.3, 0.8])


def test_label_mismatch_hand_made():
    objects, mask = _hand_made()
    mixed = _batch(mask, [0.5, 0.5], [1, 0], [0, 1], [1, 0])
    out = metrics.label_mismatch(mixed, objects)
    # sample 0: label gives class 0 half while its object is gone -> mismatched
    # sample 1: its object (top-left square) is gone too -> mismatched; partners are fully visible
    assert out["mismatch_a"].tolist() == [True, True]
    assert out["mismatch_b"].tolist() == [False, False]
    assert out["rate"] == 1.0 and out["n_mismatched"] == 2 and out["n_samples"] == 2
    assert out["share_a"].tolist() == pytest.approx([0.5, 0.5])
    assert out["visibility_b"].tolist() == pytest.approx([1.0, 1.0])
    # with a share threshold above 0.5 nothing counts
    assert metrics.label_mismatch(mixed, objects, share_threshold=0.6)["rate"] == 0.0


def test_label_mismatch_small_shares_and_equal_labels():
    objects, mask = _hand_made()
    # sample 0: lam 0.2 < 0.3 -> its invisible object is not a mismatch.
    # sample 1: same class on both sides: class visible through the partner -> no mismatch
    mixed = _batch(mask, [0.2, 0.5], [1, 0], [0, 1], [1, 1])
    out = metrics.label_mismatch(mixed, objects)
    assert out["mismatch_a"].tolist() == [False, False]
    assert out["share_a"].tolist() == pytest.approx([0.2, 1.0])
    assert out["visibility_a"].tolist() == pytest.approx([0.0, 1.0])
    assert out["rate"] == 0.0


def test_label_mismatch_counts_pairs_that_were_not_mixed():
    """A pair of two classes whose lam is 0 or 1 kept one image whole (a
    trivial graph cut); same-class samples are not pairs."""
    objects = torch.ones(5, 1, 4, 4)
    mixed = _batch(None, [0.0, 1.0, 0.5, 1.0, 0.3], [1, 0, 3, 2, 4], [0, 1, 2, 3, 4], [1, 0, 3, 3, 4],
                   policy="mixup")
    out = metrics.label_mismatch(mixed, objects)
    assert (out["n_pairs"], out["n_unmixed"]) == (3, 2)  # samples 0, 1, 2 are pairs; 0 and 1 unmixed
    assert out["unmixed_rate"] == pytest.approx(2 / 3)
    alone = _batch(None, [1.0], [0], [2], [2], policy="mixup")
    solo = metrics.label_mismatch(alone, torch.ones(1, 1, 4, 4))
    assert solo["n_pairs"] == 0 and math.isnan(solo["unmixed_rate"])


@pytest.mark.parametrize("policy", ["cutmix", "fmix", "gridmix", "smoothmix", "resizemix", "mixup", "average"])
def test_visibility_of_objects_covering_the_image_is_the_area_share(policy):
    """With whole-image objects the visible share of object a is the mask mean = lam (exact lerps)."""
    mix = _require_mix()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6)
    mixed = mix(policy, x, y, alpha=1.0, generator=torch.Generator().manual_seed(4))
    vis_a, vis_b = metrics.object_visibility(mixed, torch.ones(6, 1, 8, 8))
    torch.testing.assert_close(vis_a, mixed.lam.float())
    if policy == "resizemix":  # the whole partner is pasted, shrunk
        assert vis_b.tolist() == [1.0] * 6
    else:
        torch.testing.assert_close(vis_b, 1 - mixed.lam.float())


def test_visibility_argument_errors():
    objects, mask = _hand_made()
    mixed = _batch(mask, [0.5, 0.5], [1, 0], [0, 1], [1, 0])
    with pytest.raises(TypeError, match="mixed"):
        metrics.object_visibility(mask, objects)
    with pytest.raises(ValueError, match="object_masks"):
        metrics.object_visibility(mixed, objects[:1])
    with pytest.raises(ValueError, match="object_masks"):
        metrics.object_visibility(mixed, objects[:, :, :2])
    with pytest.raises(ValueError, match="object_masks"):
        metrics.label_mismatch(mixed, objects * 2)
    with pytest.raises(ValueError, match="share_threshold"):
        metrics.label_mismatch(mixed, objects, share_threshold=1.5)


# --------------------------------------------------------------------------- mixed evaluation


def _require_mix():
    try:
        from mixviz.mixing import mix
    except ImportError:
        pytest.skip("mixviz.mixing.mix is not written yet")
    return mix


class _Pixels(nn.Module):
    """Logits = the mean of each of C input channels (a model with a known answer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_mixed_evaluation_none_policy_is_plain_accuracy():
    _require_mix()
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (10,), generator=g)
    images = torch.rand(10, 3, 4, 4, generator=g) * 0.5
    images[torch.arange(10), labels] += 0.4   # the labelled channel is brightest for every image ...
    images[torch.arange(3), (labels[:3] + 1) % 3] = 1.0    # ... except the first three
    model = _Pixels().train()
    out = metrics.mixed_evaluation(model, images, labels, policy="none", batch_size=4)
    assert out["mixed_top1"] == pytest.approx(0.7)
    assert math.isnan(out["mixed_top2"])
    assert model.training  # mode restored
    as_uint8 = (images * 255).round().to(torch.uint8)
    assert metrics.mixed_evaluation(model, as_uint8, labels, policy="none")["mixed_top1"] == pytest.approx(0.7)


def test_mixed_evaluation_same_seed_same_result():
    mix = _require_mix()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(24, 4, 8, 8, generator=g)
    labels = torch.randint(0, 4, (24,), generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 64, 4))
    first = metrics.mixed_evaluation(model, images, labels, policy="cutmix", seed=3, batch_size=8)
    again = metrics.mixed_evaluation(model, images, labels, policy="cutmix", seed=3, batch_size=8)
    assert first == again
    assert 0.0 <= first["mixed_top1"] <= 1.0
    # reference: the same mixing by hand, then mixed_topk_accuracy
    gen = torch.Generator().manual_seed(3)
    batches = [mix("cutmix", images[i:i + 8], labels[i:i + 8], alpha=1.0, generator=gen, model=model)
               for i in range(0, 24, 8)]
    with torch.no_grad():
        logits = torch.cat([model(b.inputs) for b in batches])
    want = metrics.mixed_topk_accuracy(logits, torch.cat([b.y_a for b in batches]),
                                       torch.cat([b.y_b for b in batches]))
    assert (first["mixed_top1"], first["mixed_top2"]) == pytest.approx(want, nan_ok=True)


def test_mixed_evaluation_dynamic_policy_restores_mode_and_needs_no_outer_grad():
    _require_mix()
    from mixviz.models import build

    model = build("smallcnn", 3, (3, 8, 8), width=4).train()
    g = torch.Generator().manual_seed(2)
    images = (torch.rand(6, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    labels = torch.randint(0, 3, (6,), generator=g)
    with torch.no_grad():  # a caller's no_grad must not break the saliency step
        out = metrics.mixed_evaluation(model, images, labels, policy="saliencymix", batch_size=3)
    assert model.training
    assert 0.0 <= out["mixed_top1"] <= 1.0
    assert set(out) == {"mixed_top1", "mixed_top2"}
    assert all(p.grad is None for p in model.parameters())


def test_mixed_evaluation_argument_errors():
    model = _Pixels()
    images = torch.rand(4, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="model"):
        metrics.mixed_evaluation(lambda x: x, images, labels)
    with pytest.raises(ValueError, match="images"):
        metrics.mixed_evaluation(model, images[0], labels)
    with pytest.raises(TypeError, match="images"):
        metrics.mixed_evaluation(model, images.long(), labels)
    with pytest.raises(ValueError, match="labels"):
        metrics.mixed_evaluation(model, images, labels[:2])
    with pytest.raises(ValueError, match="batch_size"):
        metrics.mixed_evaluation(model, images, labels, batch_size=0)
    with pytest.raises(ValueError, match="alpha"):
        metrics.mixed_evaluation(model, images, labels, alpha=-1.0)


def test_value_checks_can_be_switched_off():
    probs, labels = _random_probs(10, 3, seed=0)
    with mixviz.validation(False):
        # out-of-range probabilities are not looked at without value checks
        assert isinstance(metrics.brier_score(probs * 1.5, labels), float)


# --------------------------------------------------------------------------- temperature scaling


def sampled(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * 2
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    return z, y


def test_fit_temperature_recovers_the_scale_of_an_over_or_under_confident_model():
    z, y = sampled(40_000, 10, 0)
    assert metrics.fit_temperature(z, y) == pytest.approx(1.0, abs=0.03)
    for scale in (3.0, 0.4):  # logits times 3: over-confident, T ~ 3; times 0.4: under-confident, T ~ 0.4
        assert metrics.fit_temperature(z * scale, y) == pytest.approx(scale, rel=0.03)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 200), c=st.integers(2, 12), seed=st.integers(0, 2 ** 16),
       scale=st.sampled_from([0.5, 1.0, 2.0, 7.0]))
def test_fit_temperature_is_the_nll_minimum(n, c, seed, scale):
    z, y = sampled(n, c, seed)
    z = z * scale
    t = metrics.fit_temperature(z, y)
    low, high = metrics.TEMPERATURE_RANGE
    assert low <= t <= high
    zd = z.double()

    def nll(temp):
        return float(F.cross_entropy(zd / temp, y))
    best = nll(t)
    assert best <= nll(1.0) + 1e-12
    for temp in (t * 0.99, t * 1.01):  # a local minimum (the NLL is convex in 1 / T), or at a bound
        if low <= temp <= high:
            assert best <= nll(temp) + 1e-9
    # equivariance: scaling the logits scales T (inside the bounds)
    if low * 4 < t < high / 4:
        assert metrics.fit_temperature(z * 2, y) == pytest.approx(2 * t, rel=1e-6)


def test_fit_temperature_at_the_bounds_and_its_checks():
    z = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    y = torch.tensor([0, 1])  # both right with a margin: the NLL keeps falling as T -> 0
    assert metrics.fit_temperature(z, y) == pytest.approx(metrics.TEMPERATURE_RANGE[0], rel=1e-6)
    assert metrics.fit_temperature(z, 1 - y) == pytest.approx(metrics.TEMPERATURE_RANGE[1], rel=1e-6)  # all wrong
    assert metrics.fit_temperature(z, y, bounds=(0.5, 2.0)) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="bounds"):
        metrics.fit_temperature(z, y, bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="steps"):
        metrics.fit_temperature(z, y, steps=0)
    with pytest.raises(ValueError, match="labels"):
        metrics.fit_temperature(z, torch.tensor([0, 2]))
