"""Midpoint soft labels, the criterion factory and the DM presets."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

import mixviz
from mixviz.losses import (
    DecoupledMixupLoss,
    GlobalLabelSource,
    MidpointLoss,
    MixupCrossEntropyLoss,
    OnlineClassLabels,
    PlainCrossEntropyLoss,
    SelfPrediction,
    build,
    dm_defaults,
    mixup_cross_entropy,
)
from mixviz.mixing.batch import MixedBatch

C = 5


def midpoints(y: torch.Tensor, index: torch.Tensor, lam: float = 0.5) -> MixedBatch:
    b = len(y)
    return MixedBatch(inputs=torch.zeros(b, 2), y_a=y, y_b=y[index], index=index,
                      lam=torch.full((b,), lam), policy="average")


def random_batch(seed: int, batch: int = 8) -> tuple[torch.Tensor, MixedBatch]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (batch,), generator=g)
    index = torch.randperm(batch, generator=g)
    return torch.randn(batch, C, generator=g) * 2, midpoints(y, index)


# ----------------------------------------------------------------------------- midpoint loss


@pytest.mark.parametrize("source", ["online", "self"])
def test_beta_zero_is_mixup_ce_at_half(source):
    logits, mixed = random_batch(0)
    loss = MidpointLoss(C, beta=0.0, source=source)
    want = mixup_cross_entropy(logits, mixed.y_a, mixed.y_b, 0.5)
    torch.testing.assert_close(loss(logits, mixed), want)


def test_self_source_target_and_gradient():
    logits, mixed = random_batch(1)
    beta = 0.3
    z1 = logits.clone().requires_grad_()
    MidpointLoss(C, beta=beta, source="self")(z1, mixed).backward()
    target = (1 - beta) * mixed.soft_targets(C) + beta * F.softmax(logits, 1)  # a constant
    z2 = logits.clone().requires_grad_()
    (-(target * F.log_softmax(z2, 1)).sum(1).mean()).backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    # not the gradient one would get by back-propagating through softmax(z)
    z3 = logits.clone().requires_grad_()
    live = (1 - beta) * mixed.soft_targets(C) + beta * F.softmax(z3, 1)
    (-(live * F.log_softmax(z3, 1)).sum(1).mean()).backward()
    assert not torch.allclose(z1.grad, z3.grad)


def test_online_source_target_and_gradient():
    logits, mixed = random_batch(2)
    loss = MidpointLoss(C, beta=0.4, source="online", init="uniform")
    z1 = logits.clone().requires_grad_()
    loss(z1, mixed).backward()
    target = 0.6 * mixed.soft_targets(C) + 0.4 / C
    z2 = logits.clone().requires_grad_()
    (-(target * F.log_softmax(z2, 1)).sum(1).mean()).backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    assert not loss.source.table.requires_grad


def test_online_table_changes_only_at_epoch_end():
    loss = MidpointLoss(C, beta=0.5, source="online")
    torch.testing.assert_close(loss.source.table, torch.eye(C))  # one-hot start
    for seed in range(3):
        logits, mixed = random_batch(seed)
        loss(logits, mixed)
        assert torch.equal(loss.source.table, torch.eye(C))
    assert loss.source.counts.sum() > 0
    loss.epoch_end()
    table = loss.source.table
    assert not torch.equal(table, torch.eye(C))
    torch.testing.assert_close(table.sum(1), torch.ones(C))
    assert bool((table >= 0).all())
    assert loss.source.counts.sum() == 0 and loss.source.sums.abs().sum() == 0
    # the global target is now lam * table[a] + (1 - lam) * table[b]
    logits, mixed = random_batch(7)
    glob = loss.source.targets(logits, mixed)
    torch.testing.assert_close(glob, 0.5 * table[mixed.y_a] + 0.5 * table[mixed.y_b])
    torch.testing.assert_close(glob.sum(1), torch.ones(len(glob)))


def test_online_counting_rule():
    """Mixed samples count when the top-2 are {a, b}, for both classes, with the
    partner removed; unmixed samples count when the top-1 is right."""
    src = OnlineClassLabels(4)
    y_a = torch.tensor([0, 0, 2, 3])
    y_b = torch.tensor([1, 1, 2, 3])
    logits = torch.tensor([[2.0, 1.5, 0.0, -1.0],    # top-2 {0, 1}: counts for 0 and 1
                           [2.0, -1.0, 1.0, 0.0],    # top-2 {0, 2}: does not count
                           [0.0, 0.0, 3.0, 1.0],     # unmixed, right: counts for 2
                           [3.0, 0.0, 0.0, 1.0]])    # unmixed, wrong: does not count
    mixed = MixedBatch(inputs=torch.zeros(4, 1), y_a=y_a, y_b=y_b, index=torch.arange(4),
                       lam=torch.tensor([0.5, 0.5, 1.0, 1.0]))
    src.update(logits, mixed)
    assert src.counts.tolist() == [1.0, 1.0, 1.0, 0.0]
    p = F.softmax(logits, 1)
    row0 = p[0].clone()
    row0[1] = 0
    row1 = p[0].clone()
    row1[0] = 0
    torch.testing.assert_close(src.sums[0], row0 / row0.sum())
    torch.testing.assert_close(src.sums[1], row1 / row1.sum())
    torch.testing.assert_close(src.sums[2], p[2])
    src.epoch_end()
    torch.testing.assert_close(src.table[:3], torch.stack([row0 / row0.sum(), row1 / row1.sum(), p[2]]))
    torch.testing.assert_close(src.table[3], torch.eye(4)[3])  # no sample counted: row kept


def test_online_update_only_when_training_with_grad():
    _, mixed = random_batch(3)
    logits = mixed.soft_targets(C) * 10  # a model that gets every midpoint right
    loss = MidpointLoss(C, beta=0.5)
    with torch.no_grad():
        loss(logits, mixed)
    assert loss.source.counts.sum() == 0
    loss.eval()
    loss(logits, mixed)
    assert loss.source.counts.sum() == 0
    loss.train()
    loss(logits, mixed)
    assert loss.source.counts.sum() == 8 + int((mixed.y_a != mixed.y_b).sum())


def test_online_state_dict_round_trip_is_exact():
    a = build("midpoint", C, beta=0.5, source="online")
    for seed in range(3):
        a(*random_batch(seed))
    a.epoch_end()
    a(*random_batch(10))  # accumulators mid-epoch
    assert {"source.table", "source.sums", "source.counts"} <= set(a.state_dict())
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = build("midpoint", C, beta=0.5, source="online")
    b.load_state_dict(torch.load(buffer))
    for seed in (11, 12):
        logits, mixed = random_batch(seed)
        assert torch.equal(a(logits, mixed), b(logits, mixed))
    a.epoch_end()
    b.epoch_end()
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_custom_source_is_pluggable():
    class Uniform(GlobalLabelSource):
        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def targets(self, logits, mixed):
            return torch.full_like(logits, 1.0 / logits.shape[1])

        def update(self, logits, mixed):
            self.steps += 1

    source = Uniform()
    loss = MidpointLoss(C, beta=0.2, source=source)
    logits, mixed = random_batch(4)
    want = -((0.8 * mixed.soft_targets(C) + 0.2 / C) * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(loss(logits, mixed), want)
    assert source.steps == 1
    loss.epoch_end()  # default: nothing
    assert isinstance(SelfPrediction(), GlobalLabelSource)


def test_midpoint_bad_input():
    with pytest.raises(ValueError, match="beta"):
        MidpointLoss(C, beta=1.5)
    with pytest.raises(ValueError, match="source"):
        MidpointLoss(C, source="teacher")
    with pytest.raises(ValueError, match="init"):
        MidpointLoss(C, source="online", init="random")
    with pytest.raises(ValueError, match="init"):
        MidpointLoss(C, source="self", init="uniform")
    logits, mixed = random_batch(5)
    with pytest.raises(TypeError, match="MixedBatch"):
        MidpointLoss(C)(logits, mixed.soft_targets(C))
    with pytest.raises(ValueError, match="logits"):
        MidpointLoss(C + 1)(logits, mixed)


# ----------------------------------------------------------------------------- build


def test_build_makes_each_criterion():
    logits, mixed = random_batch(6)
    ce = build("ce", C)
    assert isinstance(ce, PlainCrossEntropyLoss)
    torch.testing.assert_close(ce(logits, mixed), F.cross_entropy(logits, mixed.y_a))  # y_a only
    mce = build("mixup_ce", C)
    assert isinstance(mce, MixupCrossEntropyLoss)
    torch.testing.assert_close(mce(logits, mixed), mixup_cross_entropy(logits, mixed.y_a, mixed.y_b, mixed.lam))
    torch.testing.assert_close(mce(logits, mixed.soft_targets(C)), mce(logits, mixed))
    dm = build("dm", C, eta=0.2, mode="less", thr=0.4, lam_power=0.5)
    assert isinstance(dm, DecoupledMixupLoss) and (dm.eta, dm.mode, dm.thr, dm.lam_power) == (0.2, "less", 0.4, 0.5)
    mid = build("midpoint", C, beta=0.3, source="self")
    assert isinstance(mid, MidpointLoss) and isinstance(mid.source, SelfPrediction)
    for criterion in (ce, mce, dm, mid):
        out = criterion(logits, mixed)
        assert out.shape == () and torch.isfinite(out)
        assert hasattr(criterion, "epoch_end") == (criterion is mid)
        assert isinstance(criterion, torch.nn.Module)


def test_build_reduction_none():
    logits, mixed = random_batch(8)
    for name in ("ce", "mixup_ce", "dm", "midpoint"):
        assert build(name, C, reduction="none")(logits, mixed).shape == (8,)


def test_build_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="name.*'focal'"):
        build("focal", C)
    with pytest.raises(ValueError, match="'dm'.*gamma"):
        build("dm", C, gamma=2.0)
    with pytest.raises(ValueError, match="alpha is a mixing option"):
        build("dm", C, alpha=0.2, **dm_defaults("mixup"))
    with pytest.raises(ValueError, match="'dm'.*eta"):
        build("dm", C, eta=-1.0)
    with pytest.raises(ValueError, match="'midpoint'.*beta"):
        build("midpoint", C, beta=2.0)
    with pytest.raises(ValueError, match="num_classes"):
        build("ce", 0)
    with pytest.raises(ValueError, match="'ce'.*beta"):
        build("ce", C, beta=0.5)


def test_value_checks_in_modules_follow_the_switch():
    logits, mixed = random_batch(9)
    bad = MixedBatch(inputs=mixed.inputs, y_a=mixed.y_a, y_b=torch.full_like(mixed.y_b, C), index=mixed.index,
                     lam=mixed.lam)
    for name in ("mixup_ce", "dm", "midpoint"):
        with pytest.raises(ValueError, match="y_b"):
            build(name, C)(logits, bad)
    with pytest.raises(ValueError, match="y_a"):
        build("ce", C)(logits, MixedBatch.unmixed(mixed.inputs, torch.full_like(mixed.y_a, -1)))
    nan = logits.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits"):
        build("dm", C)(nan, mixed)
    with mixviz.validation(False):
        assert torch.isnan(build("dm", C)(nan, mixed))


# ----------------------------------------------------------------------------- presets


def test_dm_defaults_table():
    assert dm_defaults("mixup") == dict(eta=0.01, mode="more", lam_power=0.5)
    assert dm_defaults("cutmix") == dict(eta=0.1, mode="less", lam_power=0.5)
    assert dm_defaults("fmix") == dict(eta=0.01, mode="less", lam_power=0.0)
    assert dm_defaults("saliencymix") == dm_defaults("fmix")
    assert dm_defaults("resizemix") == dict(eta=0.1, mode="less", lam_power=0.5)
    assert dm_defaults("manifold") == dict(eta=0.01, mode="more", lam_power=0.0)  # r18 manifoldmix decouple a0.5
    assert dm_defaults("PuzzleMix") == dict(eta=0.1, mode="both", lam_power=1.0)  # fallback
    for policy in ("mixup", "cutmix", "gridmix"):
        assert dm_defaults(policy, "imagenet") == dict(eta=0.1, mode="both", lam_power=1.0)
    settings = dm_defaults("cutmix")
    settings["eta"] = 5.0  # a copy: the table is not changed
    assert dm_defaults("cutmix")["eta"] == 0.1
    for policy in ("mixup", "cutmix", "fmix", "saliencymix", "resizemix", "manifold", "puzzlemix"):
        loss = DecoupledMixupLoss(**dm_defaults(policy))  # the loss's own arguments, nothing else
        assert (loss.eta, loss.mode, loss.lam_power) == tuple(dm_defaults(policy).values())
        assert build("dm", C, **dm_defaults(policy)).mode == dm_defaults(policy)["mode"]
    with pytest.raises(ValueError, match="dataset_kind"):
        dm_defaults("mixup", "mnist")
    with pytest.raises(TypeError, match="policy"):
        dm_defaults(None)


def test_alpha_defaults_are_the_authors_mixing_ratios():
    from mixviz.mixing import alpha_defaults
    from mixviz.mixing.defaults import CIFAR_ALPHA

    for policy in ("mixup", "cutmix", "fmix", "saliencymix", "resizemix", "puzzlemix"):
        assert alpha_defaults(policy, with_dm=True) == 0.2  # the r18 decouple configs: a0_2
    assert alpha_defaults("manifold", with_dm=True) == 0.5  # r18_manifoldmix_CE_soft_decouple_a0_5
    assert alpha_defaults("cutmix", with_dm=True, dataset_kind="imagenet") == 1.0
    assert alpha_defaults("mixup") == CIFAR_ALPHA["mixup"] == 1.0
    assert alpha_defaults("CutMix") == 0.2
    with pytest.raises(ValueError, match="ImageNet"):
        alpha_defaults("mixup", dataset_kind="imagenet")
    with pytest.raises(TypeError, match="with_dm"):
        alpha_defaults("mixup", with_dm=1)
    with pytest.raises(TypeError, match="policy"):
        alpha_defaults(3)


def _online_rank(rank: int, world: int, port: int, shards: list, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        source = OnlineClassLabels(C)
        logits, y_a, y_b = shards[rank]
        source.update(logits, midpoints_of(y_a, y_b))
        source.epoch_end()
        torch.save(source.table, f"{out}/table{rank}.pt")
    finally:
        dist.destroy_process_group()


def midpoints_of(y_a: torch.Tensor, y_b: torch.Tensor) -> MixedBatch:
    return MixedBatch(inputs=torch.zeros(len(y_a), 1), y_a=y_a, y_b=y_b, index=torch.arange(len(y_a)),
                      lam=torch.full((len(y_a),), 0.5))


@pytest.mark.slow
def test_online_table_is_pooled_over_distributed_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    y_a, y_b = torch.randint(0, C, (16,), generator=g), torch.randint(0, C, (16,), generator=g)
    logits = midpoints_of(y_a, y_b).soft_targets(C) * 4 + torch.randn(16, C, generator=g)
    shards = [(logits[:8], y_a[:8], y_b[:8]), (logits[8:], y_a[8:], y_b[8:])]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_online_rank, args=(2, port, shards, str(tmp_path)), nprocs=2)
    single = OnlineClassLabels(C)
    single.update(logits, midpoints_of(y_a, y_b))
    single.epoch_end()
    for rank in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"table{rank}.pt"), single.table)
