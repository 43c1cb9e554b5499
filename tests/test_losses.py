"""Exactness and behaviour of mixviz.losses (DM, mixup CE, soft targets).

The references below loop over the samples and follow the formulas of issue 4
literally; they exist only in the tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mixviz
from mixviz.losses import (
    DecoupledMixupLoss,
    decoupled_mixup_loss,
    mixup_cross_entropy,
    pairs_from_soft_targets,
    soft_target_cross_entropy,
    soft_target_decoupled_mixup_loss,
)
from mixviz.mixing.batch import MixedBatch

MODES = ("both", "less", "more")
POWERS = (0.0, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- references


def ref_mce(z: torch.Tensor, y_a, y_b, lam) -> torch.Tensor:
    out = []
    for i in range(z.shape[0]):
        zi = z[i].double()
        logp = zi - torch.logsumexp(zi, 0)
        lam_i = float(lam[i])
        out.append(-(lam_i * logp[int(y_a[i])] + (1 - lam_i) * logp[int(y_b[i])]))
    return torch.stack(out)


def ref_dm(z: torch.Tensor, y_a, y_b, lam, eta, mode="both", thr=0.5, lam_power=0.0) -> torch.Tensor:
    """MCE + w_a dec_a + w_b dec_b, dec_i = -log(e^{z_i} / (e^{z_i} + sum_{c not in {a,b}} e^{z_c}))."""
    mce = ref_mce(z, y_a, y_b, lam)
    out = []
    num_classes = z.shape[1]
    for i in range(z.shape[0]):
        a, b, lam_i = int(y_a[i]), int(y_b[i]), float(lam[i])
        if a == b or min(lam_i, 1.0 - lam_i) <= 1e-3:  # same class or unmixed: the mixup CE
            out.append(mce[i])
            continue
        zi = z[i].double()
        others = [c for c in range(num_classes) if c not in (a, b)]

        def dec(k: int) -> torch.Tensor:
            return -(zi[k] - torch.logsumexp(zi[[k] + others], 0))

        total = mce[i]
        for k, share in ((a, lam_i), (b, 1.0 - lam_i)):
            weight = eta * share ** lam_power  # Python: 0.0 ** 0 == 1.0
            if mode == "less" and not share < thr:
                weight = 0.0
            if mode == "more" and not share >= thr:
                weight = 0.0
            total = total + weight * dec(k)
        out.append(total)
    return torch.stack(out)


def make_batch(batch=12, num_classes=7, seed=0, same=(0, 1), lam=None, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, num_classes, generator=g, dtype=torch.float64).mul_(3).to(dtype)
    y_a = torch.randint(0, num_classes, (batch,), generator=g)
    y_b = torch.randint(0, num_classes, (batch,), generator=g)
    for i in same:
        y_b[i] = y_a[i]
    if lam is None:
        lam = torch.rand(batch, generator=g, dtype=torch.float64)
        lam[2], lam[3], lam[4] = 0.0, 1.0, 0.5  # edges: a share of 0, of 1 and the threshold
    return z, y_a, y_b, lam.to(dtype)


# ----------------------------------------------------------------------------- mixup CE


def test_mixup_ce_matches_reference_and_soft_targets():
    z, y_a, y_b, lam = make_batch()
    got = mixup_cross_entropy(z, y_a, y_b, lam, reduction="none")
    torch.testing.assert_close(got.double(), ref_mce(z, y_a, y_b, lam), rtol=1e-5, atol=1e-5)
    batch = MixedBatch(inputs=torch.zeros(len(z), 1), y_a=y_a, y_b=y_b, index=torch.arange(len(z)), lam=lam)
    soft = soft_target_cross_entropy(z, batch.soft_targets(z.shape[1]), reduction="none")
    torch.testing.assert_close(got, soft, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mixup_cross_entropy(z, y_a, y_b, lam), got.mean())
    torch.testing.assert_close(mixup_cross_entropy(z, y_a, y_b, lam, reduction="sum"), got.sum())


def test_mixup_ce_scalar_lam_is_broadcast():
    z, y_a, y_b, _ = make_batch()
    full = mixup_cross_entropy(z, y_a, y_b, torch.full((len(z),), 0.3))
    assert torch.equal(mixup_cross_entropy(z, y_a, y_b, 0.3), full)
    assert torch.equal(mixup_cross_entropy(z, y_a, y_b, torch.tensor(0.3)), full)


# ----------------------------------------------------------------------------- DM exactness


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lam_power", POWERS)
def test_dm_matches_reference(mode, lam_power):
    z, y_a, y_b, lam = make_batch(batch=16, seed=int(lam_power * 10) + len(mode))
    got = decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.7, mode=mode, thr=0.5, lam_power=lam_power, reduction="none")
    want = ref_dm(z, y_a, y_b, lam, 0.7, mode, 0.5, lam_power)
    assert got.dtype == torch.float32 and got.shape == (16,)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.8])
def test_dm_threshold(thr):
    z, y_a, y_b, lam = make_batch(batch=16, seed=3, dtype=torch.float64)
    for mode in ("less", "more"):
        got = decoupled_mixup_loss(z, y_a, y_b, lam, eta=1.0, mode=mode, thr=thr, lam_power=1.0, reduction="none")
        torch.testing.assert_close(got, ref_dm(z, y_a, y_b, lam, 1.0, mode, thr, 1.0), rtol=1e-12, atol=1e-12)


def test_dm_reductions_and_eta_zero():
    z, y_a, y_b, lam = make_batch()
    rows = decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.3, reduction="none")
    torch.testing.assert_close(decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.3), rows.mean())
    torch.testing.assert_close(decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.3, reduction="sum"), rows.sum())
    # eta = 0 is the mixup cross-entropy
    torch.testing.assert_close(decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.0, reduction="none"),
                               mixup_cross_entropy(z, y_a, y_b, lam, reduction="none"), rtol=1e-6, atol=1e-6)
    # the decoupled terms are >= 0, so DM >= MCE
    assert bool((rows >= mixup_cross_entropy(z, y_a, y_b, lam, reduction="none") - 1e-6).all())


def test_same_class_rows_are_exactly_plain_ce():
    z, y_a, _, lam = make_batch(batch=10)
    y_b = y_a.clone()
    base = decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.0, reduction="none")
    for eta, mode, power in ((0.1, "both", 0.0), (5.0, "less", 1.0), (2.0, "more", 0.5)):
        got = decoupled_mixup_loss(z, y_a, y_b, lam, eta=eta, mode=mode, lam_power=power, reduction="none")
        assert torch.equal(got, base)  # no decoupled term at all, whatever eta, mode and lam
    torch.testing.assert_close(base, F.cross_entropy(z, y_a, reduction="none"), rtol=1e-6, atol=1e-6)
    # an unmixed batch: DM = plain CE
    batch = MixedBatch.unmixed(torch.zeros(10, 3), y_a)
    torch.testing.assert_close(DecoupledMixupLoss(eta=1.0)(z, batch), F.cross_entropy(z, y_a), rtol=1e-6, atol=1e-6)


def test_dm_two_classes():
    """With C = 2 and a != b no class is left outside the pair: dec = 0."""
    z = torch.tensor([[2.0, -1.0], [0.5, 0.5], [3.0, 1.0]], dtype=torch.float64, requires_grad=True)
    y_a, y_b, lam = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 1]), torch.tensor([0.3, 0.6, 0.2], dtype=torch.float64)
    got = decoupled_mixup_loss(z, y_a, y_b, lam, eta=1.0, reduction="none")
    torch.testing.assert_close(got, ref_dm(z.detach(), y_a, y_b, lam, 1.0))
    torch.testing.assert_close(got[:2], mixup_cross_entropy(z, y_a, y_b, lam, reduction="none")[:2])
    got.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_dm_extreme_logits():
    z = torch.tensor([[1e4, -1e4, 0.0, 0.0, 3.0],
                      [-1e4, 1e4, 0.0, 1e4, -1e4],
                      [-1e4, -1e4, 1e4, 0.0, 0.0],
                      [1e4, 1e4, 1e4, 1e4, 1e4],
                      [-1e4, 2.0, 1.0, 0.0, -1e4]])
    y_a = torch.tensor([0, 0, 0, 1, 4])
    y_b = torch.tensor([1, 1, 0, 2, 0])
    lam = torch.tensor([0.3, 0.7, 0.5, 0.9, 0.4])
    for mode in MODES:
        for power in (0.0, 1.0):
            zz = z.clone().requires_grad_()
            got = decoupled_mixup_loss(zz, y_a, y_b, lam, eta=0.5, mode=mode, lam_power=power, reduction="none")
            assert torch.isfinite(got).all()
            want = ref_dm(z.double(), y_a, y_b, lam.double(), 0.5, mode, 0.5, power)
            torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-2)
            got.sum().backward()
            assert torch.isfinite(zz.grad).all()
            # each row's gradient sums to 0 (logits shift invariance)
            torch.testing.assert_close(zz.grad.sum(1), torch.zeros(5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dm_low_precision_logits_compute_in_float32(dtype):
    z, y_a, y_b, lam = make_batch()
    low = (z * 100).to(dtype).requires_grad_()  # large enough to overflow exp() in float16
    got = decoupled_mixup_loss(low, y_a, y_b, lam, eta=0.2, lam_power=0.5, reduction="none")
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, decoupled_mixup_loss(low.detach().float(), y_a, y_b, lam, eta=0.2,
                                                         lam_power=0.5, reduction="none"))
    got.sum().backward()
    assert low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()


def test_dm_under_autocast():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 5)
    x = torch.randn(8, 6)
    y_a, y_b, lam = torch.randint(0, 5, (8,)), torch.randint(0, 5, (8,)), torch.rand(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = decoupled_mixup_loss(logits, y_a, y_b, lam, eta=0.1)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, decoupled_mixup_loss(logits.float(), y_a, y_b, lam, eta=0.1))
    loss.backward()
    assert torch.isfinite(model.weight.grad).all()


@pytest.mark.parametrize("num_classes", [2, 3, 6])
def test_dm_gradcheck(num_classes):
    z, y_a, y_b, lam = make_batch(batch=6, num_classes=num_classes, seed=num_classes, dtype=torch.float64)
    z.requires_grad_()
    for mode in MODES:
        for power in (0.0, 0.5, 1.0):
            assert torch.autograd.gradcheck(
                lambda t: decoupled_mixup_loss(t, y_a, y_b, lam, eta=0.4, mode=mode, lam_power=power,
                                               reduction="none"), (z,))
    assert torch.autograd.gradcheck(lambda t: decoupled_mixup_loss(t, y_a, y_b, lam, eta=0.4), (z,))


def test_dm_gradient_matches_reference_autograd():
    z, y_a, y_b, lam = make_batch(batch=8, seed=5, dtype=torch.float64)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    decoupled_mixup_loss(z1, y_a, y_b, lam, eta=0.3, mode="less", lam_power=0.5).backward()
    ref_dm(z2, y_a, y_b, lam, 0.3, "less", 0.5, 0.5).mean().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-12)


def test_dm_lam_is_constant():
    z, y_a, y_b, lam = make_batch(dtype=torch.float64)
    lam = lam.clone().requires_grad_()
    z.requires_grad_()
    decoupled_mixup_loss(z, y_a, y_b, lam).backward()
    assert lam.grad is None and z.grad is not None


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 6), num_classes=st.integers(2, 6),
       eta=st.floats(0.0, 3.0), mode=st.sampled_from(MODES), power=st.sampled_from(POWERS),
       scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_dm_property_matches_reference(seed, batch, num_classes, eta, mode, power, scale):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, num_classes, generator=g, dtype=torch.float64) * scale
    y_a = torch.randint(0, num_classes, (batch,), generator=g)
    y_b = torch.randint(0, num_classes, (batch,), generator=g)
    lam = torch.rand(batch, generator=g, dtype=torch.float64)
    got = decoupled_mixup_loss(z, y_a, y_b, lam, eta=eta, mode=mode, lam_power=power, reduction="none")
    torch.testing.assert_close(got, ref_dm(z, y_a, y_b, lam, eta, mode, 0.5, power), rtol=1e-9, atol=1e-9)
    assert bool((got >= ref_mce(z, y_a, y_b, lam) - 1e-9).all())


# ----------------------------------------------------------------------------- the module and soft targets


def test_module_with_mixed_batch_equals_function():
    z, y_a, y_b, lam = make_batch()
    batch = MixedBatch(inputs=torch.zeros(len(z), 2), y_a=y_a, y_b=y_b, index=torch.arange(len(z)), lam=lam)
    loss = DecoupledMixupLoss(eta=0.2, mode="less", thr=0.4, lam_power=0.5, reduction="sum")
    assert torch.equal(loss(z, batch), decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.2, mode="less", thr=0.4,
                                                             lam_power=0.5, reduction="sum"))
    # [B] labels: plain CE
    torch.testing.assert_close(DecoupledMixupLoss()(z, y_a), F.cross_entropy(z, y_a), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="logits"):
        DecoupledMixupLoss(num_classes=9)(z, batch)
    with pytest.raises(TypeError, match="target"):
        DecoupledMixupLoss()(z, [1, 2])


def test_pairs_from_soft_targets():
    t = torch.tensor([[0.0, 0.7, 0.3, 0.0],     # mixed, a = 1
                      [0.25, 0.0, 0.0, 0.75],   # mixed, larger share first
                      [0.0, 0.0, 1.0, 0.0],     # one class
                      [0.5, 0.5, 0.0, 0.0]])    # a tie
    y_a, y_b, lam = pairs_from_soft_targets(t)
    assert y_a[:3].tolist() == [1, 3, 2] and y_b[:3].tolist() == [2, 0, 2]
    assert set(y_a[3:].tolist() + y_b[3:].tolist()) == {0, 1}
    torch.testing.assert_close(lam, torch.tensor([0.7, 0.75, 1.0, 0.5]))
    # a label-smoothing floor is removed: off = 0.1 / 4, on = 0.9 + off
    off, on = 0.025, 0.925
    smooth = off + (on - off) * t
    y_a2, y_b2, lam2 = pairs_from_soft_targets(smooth)
    assert torch.equal(y_a2[:3], y_a[:3]) and torch.equal(y_b2[:3], y_b[:3])
    torch.testing.assert_close(lam2, lam)
    # two classes: no floor can be told apart, the row is read as is
    y_a3, y_b3, lam3 = pairs_from_soft_targets(torch.tensor([[0.2, 0.8], [1.0, 0.0]]))
    assert y_a3.tolist() == [1, 0] and y_b3.tolist() == [0, 0]
    torch.testing.assert_close(lam3, torch.tensor([0.8, 1.0]))


def _constant_images(batch: int) -> torch.Tensor:
    """Image i is the constant i + 1: a mixed image tells its lam exactly."""
    return (torch.arange(batch, dtype=torch.float64) + 1).view(batch, 1, 1, 1).expand(batch, 3, 8, 8).clone()


def _decoupled_part(z, target, **kw):
    return (soft_target_decoupled_mixup_loss(z, target, reduction="none", **kw)
            - soft_target_cross_entropy(z, target, reduction="none"))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_torchvision_soft_targets(kind):
    from torchvision.transforms import v2

    torch.manual_seed(1)
    batch, num_classes = 8, 10
    x = _constant_images(batch).float()
    y = torch.tensor([0, 3, 3, 5, 1, 9, 2, 2])
    transform = (v2.MixUp if kind == "mixup" else v2.CutMix)(alpha=1.0, num_classes=num_classes)
    x_mix, target = transform(x, y)
    y_b = y.roll(1, 0)
    if kind == "mixup":  # x_mix = lam x + (1 - lam) x_partner
        lam = ((x_mix - x.roll(1, 0)) / (x - x.roll(1, 0)))[:, 0, 0, 0]
    else:  # the share of pixels kept from the sample itself
        lam = (x_mix == x).float().mean((1, 2, 3))
    z = torch.randn(batch, num_classes) * 2
    mixed = MixedBatch(inputs=x_mix, y_a=y, y_b=y_b, index=torch.arange(batch).roll(1), lam=lam)
    torch.testing.assert_close(target, mixed.soft_targets(num_classes), rtol=1e-5, atol=1e-6)
    loss = DecoupledMixupLoss(eta=0.5, mode="both", lam_power=1.0, reduction="none")
    torch.testing.assert_close(loss(z, target), loss(z, mixed), rtol=1e-5, atol=1e-5)
    # samples whose partner has the same label (rows 2 and 7) are plain CE
    same = (y == y_b).nonzero().flatten()
    assert same.tolist() == [2, 7]
    torch.testing.assert_close(loss(z, target)[same], F.cross_entropy(z, y, reduction="none")[same])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_timm_soft_targets(smoothing):
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    np.random.seed(0)
    batch, num_classes = 8, 10
    x = _constant_images(batch).float()
    y = torch.tensor([0, 3, 3, 5, 1, 3, 2, 7])  # partner of i is batch - 1 - i: rows 2 and 5 share class 3
    mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem", label_smoothing=smoothing, num_classes=num_classes)
    x_mix, target = mixup(x.clone(), y)
    partner = x.flip(0)
    lam = ((x_mix - partner) / (x - partner))[:, 0, 0, 0]
    mixed = MixedBatch(inputs=x_mix, y_a=y, y_b=y.flip(0), index=torch.arange(batch).flip(0), lam=lam)
    z = torch.randn(batch, num_classes, generator=torch.Generator().manual_seed(2)) * 2

    y_a, y_b, lam_rec = pairs_from_soft_targets(target)
    assert torch.equal(torch.minimum(y_a, y_b), torch.minimum(y, y.flip(0)))
    assert torch.equal(torch.maximum(y_a, y_b), torch.maximum(y, y.flip(0)))
    share_of_y = torch.where(y_a == y, lam_rec, 1 - lam_rec)
    mixed_rows = y != y.flip(0)
    torch.testing.assert_close(share_of_y[mixed_rows], lam[mixed_rows], rtol=1e-5, atol=1e-5)

    opts = dict(eta=0.3, mode="less", lam_power=0.5)
    # the decoupled part is that of the pair and lam without smoothing ...
    dm_mixed = decoupled_mixup_loss(z, mixed.y_a, mixed.y_b, mixed.lam, reduction="none", **opts)
    mce_mixed = mixup_cross_entropy(z, mixed.y_a, mixed.y_b, mixed.lam, reduction="none")
    torch.testing.assert_close(_decoupled_part(z, target, **opts), dm_mixed - mce_mixed, rtol=1e-4, atol=1e-5)
    # ... and the mixup-CE part is timm's SoftTargetCrossEntropy on the (smoothed) target
    timm_ce = SoftTargetCrossEntropy()(z, target)
    torch.testing.assert_close(DecoupledMixupLoss(eta=0.0)(z, target), timm_ce)
    if smoothing == 0.0:
        torch.testing.assert_close(DecoupledMixupLoss(**opts)(z, target), DecoupledMixupLoss(**opts)(z, mixed))


def test_soft_targets_single_class_rows_are_plain_soft_ce():
    num_classes, smoothing = 6, 0.2
    y = torch.tensor([0, 4, 5])
    off = smoothing / num_classes
    target = torch.full((3, num_classes), off).scatter_(1, y[:, None], 1 - smoothing + off)
    z = torch.randn(3, num_classes, generator=torch.Generator().manual_seed(0))
    got = soft_target_decoupled_mixup_loss(z, target, eta=3.0, reduction="none")
    assert torch.equal(got, soft_target_cross_entropy(z, target, reduction="none"))
    onehot = F.one_hot(y, num_classes).float()
    torch.testing.assert_close(DecoupledMixupLoss(eta=3.0)(z, onehot), F.cross_entropy(z, y))


def test_soft_target_gradcheck():
    z, y_a, y_b, lam = make_batch(batch=5, num_classes=5, dtype=torch.float64)
    target = 0.01 + 0.95 * (lam[:, None] * F.one_hot(y_a, 5) + (1 - lam[:, None]) * F.one_hot(y_b, 5))
    z.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: soft_target_decoupled_mixup_loss(t, target, eta=0.5, mode="more", lam_power=1.0), (z,))


# ----------------------------------------------------------------------------- bad input


def test_shape_and_type_checks_always_on():
    z, y_a, y_b, lam = make_batch()
    with mixviz.validation(False):
        with pytest.raises(ValueError, match="lam"):
            decoupled_mixup_loss(z, y_a, y_b, lam.view(-1, 1))
        with pytest.raises(ValueError, match="lam"):
            decoupled_mixup_loss(z, y_a, y_b, lam[:-1])
        with pytest.raises(TypeError, match="lam"):
            decoupled_mixup_loss(z, y_a, y_b, torch.ones(len(z), dtype=torch.long))
        with pytest.raises(ValueError, match="y_a"):
            decoupled_mixup_loss(z, y_a[:-1], y_b, lam)
        with pytest.raises(ValueError, match="y_b"):
            mixup_cross_entropy(z, y_a, y_b.view(-1, 1), lam)
        with pytest.raises(TypeError, match="y_a"):
            decoupled_mixup_loss(z, y_a.float(), y_b, lam)
        with pytest.raises(ValueError, match="logits"):
            decoupled_mixup_loss(z[0], y_a, y_b, lam)
        with pytest.raises(TypeError, match="logits"):
            decoupled_mixup_loss(z.long(), y_a, y_b, lam)
        with pytest.raises(ValueError, match="target"):
            soft_target_decoupled_mixup_loss(z, torch.zeros(len(z), 3))


def test_value_checks_follow_the_switch():
    z, y_a, y_b, lam = make_batch()
    bad_lam = lam.clone()
    bad_lam[0] = 1.5
    nan_z = z.clone()
    nan_z[1, 2] = float("nan")
    with pytest.raises(ValueError, match="y_b"):
        decoupled_mixup_loss(z, y_a, torch.full_like(y_b, 7), lam)
    with pytest.raises(ValueError, match="lam"):
        decoupled_mixup_loss(z, y_a, y_b, bad_lam)
    with pytest.raises(ValueError, match="lam"):
        mixup_cross_entropy(z, y_a, y_b, -0.1)
    with pytest.raises(ValueError, match="logits"):
        decoupled_mixup_loss(nan_z, y_a, y_b, lam)
    with pytest.raises(ValueError, match="target"):
        soft_target_decoupled_mixup_loss(z, -torch.ones_like(z))
    with mixviz.validation(False):
        decoupled_mixup_loss(z, y_a, y_b, bad_lam)  # no host sync, no check
        out = decoupled_mixup_loss(nan_z, y_a, y_b, lam, reduction="none")
        assert math.isnan(out[1].item()) and torch.isfinite(out[2:]).all()


@pytest.mark.parametrize("kwargs, name", [
    (dict(eta=-0.1), "eta"), (dict(mode="sometimes"), "mode"), (dict(thr=0.0), "thr"), (dict(thr=1.0), "thr"),
    (dict(lam_power=-1.0), "lam_power"), (dict(reduction="max"), "reduction"), (dict(eta=float("nan")), "eta"),
])
def test_bad_options_name_the_argument(kwargs, name):
    z, y_a, y_b, lam = make_batch()
    with pytest.raises(ValueError, match=name):
        decoupled_mixup_loss(z, y_a, y_b, lam, **kwargs)
    with pytest.raises(ValueError, match=name):
        DecoupledMixupLoss(**kwargs)
    with pytest.raises(TypeError, match="thr"):
        DecoupledMixupLoss(thr="half")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_dm_gradient_scales_with_the_upstream_gradient(reduction):
    """The gradient is computed in the forward pass and scaled in the backward:
    the value must not depend on whether the logits require a gradient, and an
    upstream gradient other than 1 (per row for "none") must scale it."""
    z, y_a, y_b, lam = make_batch(batch=7, seed=11, dtype=torch.float64)
    y_b[:2] = y_a[:2]  # same-class rows too
    options = dict(eta=0.3, mode="both", lam_power=1.0, reduction=reduction)
    plain = decoupled_mixup_loss(z, y_a, y_b, lam, **options)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = decoupled_mixup_loss(z1, y_a, y_b, lam, **options)
    torch.testing.assert_close(got.detach(), plain, rtol=0, atol=0)
    upstream = torch.linspace(-2.0, 3.0, got.numel(), dtype=torch.float64).reshape(got.shape)
    got.backward(upstream)
    want = ref_dm(z2, y_a, y_b, lam, 0.3, "both", 0.5, 1.0)
    want = {"mean": want.mean(), "sum": want.sum(), "none": want}[reduction]
    want.backward(upstream)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- compiled path


def test_dm_compile_option_is_checked_and_kept():
    with pytest.raises(TypeError, match="compile"):
        DecoupledMixupLoss(compile="yes")
    with pytest.raises(TypeError, match="compile"):
        decoupled_mixup_loss(*make_batch(), compile=1)
    assert "compile=True" in repr(DecoupledMixupLoss(compile=True))
    assert mixviz.losses.build("dm", 7, compile=True).compile is True


def test_dm_compile_failure_falls_back_to_eager(monkeypatch):
    """A compile that fails (no C compiler, unsupported platform) warns and
    gives the eager loss and gradient, and is not tried again."""
    from mixviz.losses import dm

    calls = []

    def broken_compile(fn, **kwargs):
        def run(*args):
            calls.append(1)
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(dm, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    z, y_a, y_b, lam = make_batch(dtype=torch.float64)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    with pytest.warns(RuntimeWarning, match="compiled DM loss failed.*no compiler here"):
        got = decoupled_mixup_loss(z1, y_a, y_b, lam, eta=0.3, mode="less", lam_power=0.5, compile=True)
    want = decoupled_mixup_loss(z2, y_a, y_b, lam, eta=0.3, mode="less", lam_power=0.5)
    assert torch.equal(got, want)
    got.backward()
    want.backward()
    assert torch.equal(z1.grad, z2.grad)
    decoupled_mixup_loss(z, y_a, y_b, lam, compile=True)  # no second attempt, no second warning
    assert calls == [1]


@pytest.mark.slow
def test_dm_compiled_matches_eager_and_reference():
    """The fused (torch.compile) loss: same values and gradients as the eager
    one, including logits of +-1e4 and same-class rows (compiles for about half
    a minute on a small CPU with a cold cache)."""
    z, y_a, y_b, lam = make_batch(batch=16, num_classes=9, seed=4)
    z[0, y_a[0]], z[1, :] = 1e4, -1e4
    z[5, y_b[5]] = -1e4
    criterion = DecoupledMixupLoss(eta=0.3, mode="less", lam_power=0.5, reduction="none", compile=True)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = criterion(z1, MixedBatch(inputs=z, y_a=y_a, y_b=y_b, index=torch.arange(16), lam=lam))
    want = decoupled_mixup_loss(z2, y_a, y_b, lam, eta=0.3, mode="less", lam_power=0.5, reduction="none")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(got.double(), ref_dm(z.double(), y_a, y_b, lam.double(), 0.3, "less", 0.5, 0.5),
                               rtol=1e-6, atol=1e-2)
    upstream = torch.linspace(-1.0, 2.0, 16)
    got.backward(upstream)
    want.backward(upstream)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)
