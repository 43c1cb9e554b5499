"""The DM loss against the authors' code (OpenMixup's ``ClsMixupHead`` and
``soft_mix_cross_entropy``): unmixed rows get the mixup CE, and
``weight_order="openmixup"`` reproduces the authors' class order.

``openmixup_dm`` below is a transcription of the authors' rule, written out
row by row (slow and literal on purpose): the head turns one lam per batch
into two weights, the loss finds the batch's mixed rows (both shares above
1e-3) and attaches the weights to the classes whose share equals the shares
of the first mixed row, in class-index order.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mixviz.losses import DecoupledMixupLoss, decoupled_mixup_loss, mixup_cross_entropy
from mixviz.losses.dm import UNMIXED_SHARE, soft_target_decoupled_mixup_loss
from mixviz.mixing.batch import MixedBatch

MODES = ("both", "less", "more")
POWERS = (0.0, 0.5, 1.0)
EDGES = (0.0, 1e-4, 1.0 - 1e-4, 1.0)


def _logits(batch: int, classes: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, classes, generator=g, dtype=torch.float64).mul_(3).to(dtype)


def _pairs(batch: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    y_a = torch.randint(0, classes, (batch,), generator=g)
    y_b = (y_a + torch.randint(1, classes, (batch,), generator=g)) % classes  # y_b != y_a
    return y_a, y_b


def _value_and_grad(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.detach().clone().requires_grad_(True)
    loss = fn(z)
    (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), grad


# ----------------------------------------------------------------------------- unmixed rows


@pytest.mark.parametrize("mode,power", list(itertools.product(MODES, POWERS)))
def test_unmixed_rows_are_the_mixup_ce_in_loss_and_gradient(mode, power):
    z0 = _logits(16, 10, seed=3)
    y_a, y_b = _pairs(16, 10, seed=3)
    for lam_value in EDGES:
        lam = torch.full((16,), lam_value, dtype=torch.float64)
        want, want_grad = _value_and_grad(lambda z: mixup_cross_entropy(z, y_a, y_b, lam), z0)
        for eta in (0.01, 1.0):
            paths = {
                "pairs": lambda z: decoupled_mixup_loss(z, y_a, y_b, lam, eta=eta, mode=mode, lam_power=power),
                "module": lambda z: DecoupledMixupLoss(eta=eta, mode=mode, lam_power=power)(
                    z, MixedBatch(inputs=z.detach(), y_a=y_a, y_b=y_b, index=torch.arange(16), lam=lam)),
                "openmixup": lambda z: decoupled_mixup_loss(z, y_a, y_b, lam, eta=eta, mode=mode, lam_power=power,
                                                            weight_order="openmixup"),
            }
            for name, fn in paths.items():
                got, got_grad = _value_and_grad(fn, z0)
                assert abs(float(got - want)) <= 1e-6, (name, lam_value, eta)
                torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=1e-9, msg=f"{name} lam={lam_value}")


@pytest.mark.parametrize("mode,power", list(itertools.product(MODES, POWERS)))
def test_soft_target_path_gives_unmixed_rows_no_decoupled_term(mode, power):
    z0 = _logits(8, 6, seed=5)
    y_a, y_b = _pairs(8, 6, seed=5)
    for lam_value in EDGES:
        lam = torch.full((8,), lam_value, dtype=torch.float64)
        target = lam[:, None] * F.one_hot(y_a, 6).double() + (1 - lam[:, None]) * F.one_hot(y_b, 6).double()
        got = soft_target_decoupled_mixup_loss(z0, target, eta=0.5, mode=mode, lam_power=power)
        want = -(target * z0.log_softmax(1)).sum(1).mean()
        assert abs(float(got - want)) <= 1e-6, lam_value


def test_the_absent_class_gets_no_push_at_lam_power_zero():
    """The measured case of the issue: lam = 1, eta 0.01, "less", p 0 added
    +0.0755 over CE and raised the absent class's logit (gradient -0.0099)."""
    z0 = _logits(64, 10, seed=11, dtype=torch.float32)
    y_a, y_b = _pairs(64, 10, seed=11)
    ce, ce_grad = _value_and_grad(lambda z: F.cross_entropy(z, y_a), z0)
    dm, dm_grad = _value_and_grad(lambda z: decoupled_mixup_loss(z, y_a, y_b, 1.0, eta=0.01, mode="less"), z0)
    assert abs(float(dm - ce)) <= 1e-6
    absent = dm_grad.gather(1, y_b[:, None])
    torch.testing.assert_close(absent, ce_grad.gather(1, y_b[:, None]), rtol=0, atol=1e-7)


def test_just_above_the_threshold_the_decoupled_term_is_back():
    z = _logits(4, 5, seed=2)
    y_a, y_b = _pairs(4, 5, seed=2)
    lam = torch.full((4,), 1.0 - 2 * UNMIXED_SHARE, dtype=torch.float64)
    mce = mixup_cross_entropy(z, y_a, y_b, lam)
    assert float(decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.1, mode="less") - mce) > 1e-4
    assert UNMIXED_SHARE == 1e-3


def test_compiled_loss_agrees_on_unmixed_rows():
    torch._dynamo.reset()
    z0 = _logits(8, 6, seed=9, dtype=torch.float32)
    y_a, y_b = _pairs(8, 6, seed=9)
    lam = torch.tensor([0.0, 1e-4, 1 - 1e-4, 1.0, 0.3, 0.7, 0.5, 1.0])
    eager, eager_grad = _value_and_grad(
        lambda z: decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.1, mode="less"), z0)
    compiled, compiled_grad = _value_and_grad(
        lambda z: decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.1, mode="less", compile=True), z0)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-6)
    edge = lam.clone()
    edge[4:] = 1.0  # every row unmixed: the compiled DM is the mixup CE
    compiled_edge = decoupled_mixup_loss(z0, y_a, y_b, edge, eta=0.1, mode="less", compile=True)
    torch.testing.assert_close(compiled_edge, mixup_cross_entropy(z0, y_a, y_b, edge), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- the authors' class order


def _lambda_adjust(share: float, power: float) -> float:
    """The head's 'pow' rescale with lam_thr = 1 (the DM configs): share**power below 1, 1 at 1."""
    return 1.0 if share >= 1.0 else share ** power


def openmixup_dm(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float, eta: float, mode: str,
                 thr: float, power: float) -> torch.Tensor:
    """The authors' DM loss, summed over the batch (their two separate means
    of mixed and unmixed rows become one sum), for one lam per batch."""
    classes = z.shape[1]
    # the head: which class gets a weight, from a's share
    below = lam < thr
    if mode == "less":
        raw = [lam, 0.0] if below else [0.0, 1.0 - lam]
    elif mode == "more":
        raw = [lam, 0.0] if not below else [0.0, 1.0 - lam]
    else:
        raw = [lam, 1.0 - lam]
    eta_weight = [eta * _lambda_adjust(v, power) if v > 0 else 0.0 for v in raw]
    label = lam * F.one_hot(y_a, classes).double() + (1 - lam) * F.one_hot(y_b, classes).double()
    # the loss: rows with fewer classes above 1e-3 than the most mixed row are plain soft CE
    eps = 1e-3
    counts = (label > eps).sum(1)
    mixed = counts >= counts.max()
    logp = z.log_softmax(1)
    total = -(label * logp).sum()
    rows = [i for i in range(len(z)) if bool(mixed[i])]
    first = label[rows[0]]
    lam_k = first[first > eps].tolist()  # the shares of the first mixed row, in class-index order
    if len(set(lam_k)) == len(lam_k) and len(lam_k) > 1:
        for i, share in enumerate(lam_k):
            for n in rows:
                keep = [c for c in range(classes) if float(label[n, c]) == share or not float(label[n, c]) > eps]
                target = [c for c in keep if float(label[n, c]) == share][0]
                total = total + eta_weight[i] * -(z[n, keep].log_softmax(0)[keep.index(target)])
    return total


@pytest.mark.parametrize("mode,power", list(itertools.product(MODES, POWERS)))
def test_openmixup_order_reproduces_the_authors_rule(mode, power):
    swapped_batches = 0
    for seed in range(12):
        g = torch.Generator().manual_seed(100 + seed)
        lam = float(torch.rand((), generator=g, dtype=torch.float64)) * 0.96 + 0.02
        z0 = _logits(10, 7, seed=seed)
        y_a, y_b = _pairs(10, 7, seed=seed)
        if seed % 3 == 0:
            y_b[4] = y_a[4]  # a same-class row: plain CE in both codes
        swapped_batches += int(y_a[0] > y_b[0])
        want, want_grad = _value_and_grad(lambda z: openmixup_dm(z, y_a, y_b, lam, 0.3, mode, 0.5, power), z0)
        got, got_grad = _value_and_grad(
            lambda z: decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.3, mode=mode, lam_power=power,
                                           reduction="sum", weight_order="openmixup"), z0)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-10)
    assert 0 < swapped_batches < 12  # both class orders of the first row were exercised


def test_openmixup_order_other_thresholds_and_lam_half():
    z0 = _logits(6, 5, seed=1)
    y_a, y_b = _pairs(6, 5, seed=1)
    for thr, lam in ((0.3, 0.4), (0.7, 0.6), (0.7, 0.8), (0.5, 0.5)):
        for mode in MODES:
            want = openmixup_dm(z0, y_a, y_b, lam, 0.2, mode, thr, 1.0)
            got = decoupled_mixup_loss(z0, y_a, y_b, lam, eta=0.2, mode=mode, thr=thr, lam_power=1.0,
                                       reduction="sum", weight_order="openmixup")
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=f"thr={thr} lam={lam} {mode}")
    # at lam = 0.5 the authors' code has no decoupled term at all
    half = decoupled_mixup_loss(z0, y_a, y_b, 0.5, eta=0.2, mode="both", weight_order="openmixup")
    torch.testing.assert_close(half, mixup_cross_entropy(z0, y_a, y_b, torch.full((6,), 0.5, dtype=torch.float64)))


def test_default_order_is_per_sample_and_the_authors_order_swaps():
    """The per-sample default does not depend on which row comes first; the
    authors' order swaps the weights when the first mixed row has y_a > y_b."""
    z = _logits(10, 8, seed=4)
    y_a, y_b = _pairs(10, 8, seed=4)
    y_a[0], y_b[0] = 1, 5  # first row in class order
    lam = torch.full((10,), 0.7, dtype=torch.float64)
    perm = torch.arange(9, -1, -1)
    perm_first = int(perm[0])
    y_a[perm_first], y_b[perm_first] = 6, 2  # after the permutation the first row has y_a > y_b
    rows = decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.5, mode="less", reduction="none")
    rows_perm = decoupled_mixup_loss(z[perm], y_a[perm], y_b[perm], lam, eta=0.5, mode="less", reduction="none")
    torch.testing.assert_close(rows_perm, rows[perm], rtol=0, atol=0)
    authors = decoupled_mixup_loss(z, y_a, y_b, lam, eta=0.5, mode="less", reduction="none",
                                   weight_order="openmixup")
    torch.testing.assert_close(authors, rows, rtol=1e-12, atol=1e-12)  # first row ordered: same weights
    authors_perm = decoupled_mixup_loss(z[perm], y_a[perm], y_b[perm], lam, eta=0.5, mode="less", reduction="none",
                                        weight_order="openmixup")
    # swapped: in "less" mode the weight meant for the minor class b lands on the majority class a
    swapped = decoupled_mixup_loss(z[perm], y_b[perm], y_a[perm], 1 - lam, eta=0.5, mode="more", reduction="none")
    torch.testing.assert_close(authors_perm, swapped, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(authors_perm, rows_perm)


def test_weight_order_is_checked_and_shown():
    with pytest.raises(ValueError, match="weight_order"):
        decoupled_mixup_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([1, 2]), 0.5,
                             weight_order="swapped")
    assert "weight_order='openmixup'" in repr(DecoupledMixupLoss(weight_order="openmixup"))
    assert "weight_order" not in repr(DecoupledMixupLoss())


def test_cutmix_on_16px_images_is_untouched_by_the_unmixed_rule():
    """Why results/full's CutMix + DM rows (trained before the unmixed-row rule, with the authors' CutMix
    setting: eta 0.1, "less", p 0.5) stand: on 16 px images a CutMix share is a whole number of pixels out
    of 256, so the only rows at most 1e-3 from 0 or 1 are exactly 0 or 1, where "less" with p 0.5 already
    gave both classes weight 0.  The loss and its gradient without the rule (ref_dm below, the earlier
    formula) equal the loss with it, batch by batch."""
    from mixviz import mixing

    g = torch.Generator().manual_seed(0)
    unmixed_rows = 0
    for step in range(20):
        x, y = torch.rand(64, 3, 16, 16, generator=g), torch.randint(0, 10, (64,), generator=g)
        batch = mixing.mix("cutmix", x, y, alpha=1.0, generator=g)
        lam = batch.lam.double()
        unmixed_rows += int((torch.minimum(lam, 1 - lam) <= UNMIXED_SHARE).sum())
        assert bool(((lam * 256).round() == lam * 256).all())  # whole pixels
        z0 = _logits(64, 10, seed=step)
        new, new_grad = _value_and_grad(lambda z: DecoupledMixupLoss(eta=0.1, mode="less", lam_power=0.5)(z, batch), z0)

        def earlier(z):  # the formula before the rule: eta * share**p, "less" keeps shares < 0.5, a == b plain CE
            logp = z.log_softmax(1)
            y_a, y_b = batch.y_a, batch.y_b
            mce = -(lam * logp.gather(1, y_a[:, None])[:, 0] + (1 - lam) * logp.gather(1, y_b[:, None])[:, 0])
            pair = torch.stack((y_a, y_b), 1)
            rest = z.scatter(1, pair, float("-inf")).logsumexp(1)
            total = mce
            for cls, share in ((y_a, lam), (y_b, 1 - lam)):
                weight = 0.1 * share ** 0.5 * (share < 0.5) * (y_a != y_b)
                total = total + weight * F.softplus(rest - z.gather(1, cls[:, None])[:, 0])
            return total.mean()

        old, old_grad = _value_and_grad(earlier, z0)
        torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(new_grad, old_grad, rtol=1e-10, atol=1e-12)
    assert unmixed_rows > 0  # the batches did hold rows with lam in {0, 1}
