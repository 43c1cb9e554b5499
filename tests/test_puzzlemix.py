"""PuzzleMix as published: the exact graph cut (against brute force and against
GCO, the original's solver), the energy (against a per-pair reference), the
transport (against a literal dense transcription), the policy's invariants and
options, and what the transport does to object visibility."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mixviz import metrics
from mixviz.mixing import POLICIES, MixedBatch, graph_cut_labels, mix, transport_plan
from mixviz.mixing.batch import cell_index, move_cells

PM = sys.modules["mixviz.mixing.puzzlemix"]  # the module (the package attribute is the function)
DATA = Path(__file__).resolve().parent / "data"


def _load_reference():
    spec = importlib.util.spec_from_file_location("make_puzzlemix_gco_reference",
                                                  DATA / "make_puzzlemix_gco_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = _load_reference()


class EnergyModel(nn.Module):
    """logits = [w * sum(x**2), 0]: with label 0 the input gradient is
    proportional to x, so the saliency is the pixels' RMS over channels."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = self.w * (x ** 2).flatten(1).sum(1)
        return torch.stack([energy, torch.zeros_like(energy)], 1)


def small_cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)).train()


def images(b: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.randint(0, 3, (b,), generator=g)


# --------------------------------------------------------------------------- the graph cut


def brute_force_energies(unary, down, right):
    """Energy of every labelling of one small grid: ([M] energies, [M, h, w] labellings)."""
    h, w, k = unary.shape
    labels = np.array(list(itertools.product(range(k), repeat=h * w))).reshape(-1, h, w)
    data = np.take_along_axis(np.broadcast_to(unary, (len(labels), h, w, k)), labels[..., None], -1)[..., 0]
    pair = (down * (labels[:, 1:] - labels[:, :-1]) ** 2).sum((1, 2)) + \
        (right * (labels[:, :, 1:] - labels[:, :, :-1]) ** 2).sum((1, 2))
    return data.sum((1, 2)) + pair / (k - 1) ** 2, labels


def energy(labels, unary, down, right):
    k = unary.shape[-1]
    data = np.take_along_axis(unary, labels[..., None], -1)[..., 0].sum((1, 2))
    pair = (down * (labels[:, 1:] - labels[:, :-1]) ** 2).sum((1, 2)) + \
        (right * (labels[:, :, 1:] - labels[:, :, :-1]) ** 2).sum((1, 2))
    return data + pair / (k - 1) ** 2


@pytest.mark.parametrize("h, w, k", [(1, 1, 3), (2, 2, 3), (2, 3, 3), (3, 3, 3), (3, 3, 2), (2, 2, 4), (1, 4, 3)])
def test_graph_cut_labels_is_the_global_optimum(h, w, k):
    rng = np.random.default_rng(h * 10 + w + k)
    b = 8
    unary = rng.normal(size=(b, h, w, k))  # any unary, negative values included
    down, right = rng.uniform(0, 2, (b, h - 1, w)), rng.uniform(0, 2, (b, h, w - 1))
    down[0] = 0  # a grid without pairwise terms
    got = graph_cut_labels(unary, down, right)
    assert got.shape == (b, h, w) and got.dtype == np.int64
    assert got.min() >= 0 and got.max() < k
    mine = energy(got, unary, down, right)
    for s in range(b):
        best, _ = brute_force_energies(unary[s], down[s], right[s])
        assert mine[s] == pytest.approx(best.min(), abs=1e-9)


def test_graph_cut_labels_on_puzzlemix_energies_against_brute_force():
    """The original's energies (from the per-pair reference) at n = 2: the min cut is the optimum."""
    rng = np.random.default_rng(5)
    for _ in range(6):
        unary, down, right = REF.original_energy(*REF.random_pair(rng), float(rng.random()), 2)
        got = graph_cut_labels(unary[None], down[None], right[None])
        best, _ = brute_force_energies(unary, down, right)
        assert energy(got, unary[None], down[None], right[None])[0] == pytest.approx(best.min(), abs=1e-12)


def test_graph_cut_labels_checks_its_arguments():
    u = np.zeros((1, 2, 2, 3))
    with pytest.raises(ValueError, match="weight"):
        graph_cut_labels(u, -np.ones((1, 1, 2)), np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match="weight_down"):
        graph_cut_labels(u, np.zeros((1, 2, 2)), np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match="unary"):
        graph_cut_labels(np.zeros((1, 2, 2, 1)), np.zeros((1, 1, 2)), np.zeros((1, 2, 1)))
    with pytest.raises(ValueError, match="finite"):
        graph_cut_labels(np.full((1, 2, 2, 3), np.nan), np.zeros((1, 1, 2)), np.zeros((1, 2, 1)))


# --------------------------------------------------------------------------- against GCO (the original's solver)


@pytest.fixture(scope="module")
def gco_reference():
    with np.load(DATA / "puzzlemix_gco_reference.npz") as data:
        return dict(data)


@pytest.mark.parametrize("suffix", ["_n2", "_n4", "_n8", "_n16", "_k2"])
def test_min_cut_is_never_worse_than_gco_swap(gco_reference, suffix):
    """Same integer energies as the original builds them, solved by GCO's
    alpha-beta swap (as the original calls it) and by the min cut."""
    d = gco_reference
    unary, down, right = d["unary" + suffix], d["down" + suffix], d["right" + suffix]
    ours = graph_cut_labels(unary, down, right)
    e_ours = REF.scaled_energy(ours, unary, down, right)
    e_gco = REF.scaled_energy(d["gco_labels" + suffix].astype(np.int64), unary, down, right)
    assert (e_ours <= e_gco).all()
    if suffix in ("_n2", "_k2"):  # gco is optimal here: 3**4 labellings to check / one binary cut
        assert (e_ours == e_gco).all()


def test_how_often_gco_swap_reaches_the_optimum(gco_reference):
    """The numbers quoted in the module docstring of mixviz.mixing.puzzlemix."""
    equal, gaps = 0, []
    for n in (2, 4, 8, 16):
        d = {key: gco_reference[f"{key}_n{n}"] for key in ("unary", "down", "right", "gco_labels")}
        ours = REF.scaled_energy(graph_cut_labels(d["unary"], d["down"], d["right"]), d["unary"], d["down"], d["right"])
        theirs = REF.scaled_energy(d["gco_labels"].astype(np.int64), d["unary"], d["down"], d["right"])
        equal += int((ours == theirs).sum())
        gaps.append((theirs - ours) / ours)
    gaps = np.concatenate(gaps)
    assert len(gaps) == 300 and equal == 257
    assert gaps[gaps > 0].mean() == pytest.approx(2.07e-3, rel=0.01) and gaps.max() == pytest.approx(1.68e-2, rel=0.01)


# --------------------------------------------------------------------------- the energy


@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("n_labels", [2, 3])
def test_energy_matches_the_per_pair_reference(n, n_labels):
    rng = np.random.default_rng(n + 10 * n_labels)
    pairs = [REF.random_pair(rng) for _ in range(4)]
    x = torch.tensor(np.stack([p[0] for p in pairs]), dtype=torch.float32)
    sal = torch.tensor(np.stack([p[2] for p in pairs]), dtype=torch.float32)
    index = torch.tensor([2, 0, 3, 1])
    lam = torch.tensor([0.3, 0.5, 0.02, 0.9])
    unary, down, right = PM._energy(x, sal, index, lam, n, beta=1.2, gamma=0.5, eta=0.2, neigh_size=4,
                                    n_labels=n_labels)
    assert unary.shape == (4, n, n, n_labels)
    for i in range(4):
        j = int(index[i])
        want = REF.original_energy(x[i].double().numpy(), x[j].double().numpy(), sal[i].double().numpy(),
                                   sal[j].double().numpy(), float(lam[i]), n, n_labels=n_labels)
        for got, ref in zip((unary[i], down[i], right[i]), want):
            np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- transport


def dense_plan(mask: torch.Tensor, sal: torch.Tensor, eps: float) -> torch.Tensor:
    """The greedy plan written out with dense [B, N, N] one-hot matrices, step
    by step as the authors describe it; returns the source of each cell or -1."""
    b, g = mask.shape[0], mask.shape[-1]
    nn_ = g * g
    pos = torch.tensor([(i, j) for i in range(g) for j in range(g)], dtype=torch.float32)
    dist = ((pos[:, None] - pos[None]) ** 2).sum(-1) / max(g - 1, 1) ** 2
    z = (mask.reshape(b, nn_) > 0).float()
    cost = eps * dist - sal.reshape(b, nn_, 1).float() * z.reshape(b, 1, nn_)
    for _ in range(g):
        plan = torch.zeros_like(cost).scatter_(-1, cost.argmin(-1, keepdim=True), 1)
        col_best = (plan * cost).argmin(-2, keepdim=True)
        win = torch.zeros_like(cost).scatter_(-2, col_best, 1) * plan
        cost += (1 - win) * plan
    return torch.where(win.sum(1) > 0, win.argmax(1), -1).reshape(b, g, g)


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 3), g=st.integers(1, 6), seed=st.integers(0, 2 ** 16), ties=st.booleans(),
       eps=st.sampled_from([0.0, 0.1, 0.8, 3.0]))
def test_transport_plan_matches_the_dense_transcription(b, g, seed, ties, eps):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 3, (b, g, g), generator=gen).float() / 2  # 0, 0.5, 1
    sal = torch.rand(b, g, g, generator=gen)
    if ties:  # exact zeros and repeated values: the tie rules decide
        sal = torch.randint(0, 3, (b, g, g), generator=gen).float()
    sal = sal / sal.sum((1, 2), keepdim=True).clamp_min(1e-12)
    got = transport_plan(mask, sal, eps=eps)
    assert torch.equal(got, dense_plan(mask, sal, eps))
    for row in got.reshape(b, -1):  # a partial permutation: every source used at most once
        used = row[row >= 0]
        assert used.unique().numel() == used.numel()


def test_transport_moves_a_hidden_salient_cell_to_the_nearest_visible_cell():
    mask = torch.zeros(1, 4, 4)
    mask[:, :, :2] = 1  # the left half shows this image
    sal = torch.full((1, 4, 4), 0.01)
    sal[0, 1, 2] = 0.5  # hidden, next to the seam: worth moving
    sal[0, 2, 3] = 0.3  # hidden, two cells away: 0.8 * 4 / 9 = 0.36 > 0.3, stays hidden
    sal = sal / sal.sum()
    plan = transport_plan(mask, sal, eps=0.8)[0]
    assert plan[1, 1] == 1 * 4 + 2  # cell (1, 2) moved to (1, 1), replacing that cell's own content
    assert plan[:, 0].tolist() == [0, 4, 8, 12] and plan[[0, 2, 3], 1].tolist() == [1, 9, 13]
    assert (plan[:, 2:] == -1).all()  # nothing is moved where the image is hidden
    with pytest.raises(ValueError, match="eps"):
        transport_plan(mask, sal, eps=-1.0)
    with pytest.raises(ValueError, match="mask"):
        transport_plan(mask[0], sal[0])


def test_move_cells_is_a_block_permutation_when_cells_divide_the_image():
    x = torch.rand(3, 2, 8, 12, generator=torch.Generator().manual_seed(0))
    src = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    src[1, 5] = -1
    out = move_cells(x, src.view(3, 4, 4), fill=torch.tensor([7.0, 9.0]))
    cells = x.view(3, 2, 4, 2, 4, 3).permute(0, 1, 2, 4, 3, 5).reshape(3, 2, 16, 2, 3)
    for i in range(3):
        for j in range(16):
            r, c = divmod(j, 4)
            got = out[i, :, 2 * r:2 * r + 2, 3 * c:3 * c + 3]
            if src[i, j] < 0:
                assert torch.equal(got, torch.tensor([7.0, 9.0]).view(2, 1, 1).expand(2, 2, 3))
            else:
                assert torch.equal(got, cells[i, :, int(src[i, j])])


def test_move_cells_with_unequal_cells_clamps_offsets():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert cell_index(5, 2).tolist() == [0, 0, 0, 1, 1]  # rows 0-2 and 3-4, as nearest resizing splits them
    out = move_cells(x, torch.tensor([[[3, 2], [1, 0]]]), fill=-1.0)[0, 0]
    # cell (0, 0) (3 x 3 px) shows cell (1, 1) (2 x 2 px: rows 3-4, cols 3-4), its last row/column repeated
    assert out[:3, :3].tolist() == [[18, 19, 19], [23, 24, 24], [23, 24, 24]]
    # cell (1, 1) (2 x 2) shows the top-left 2 x 2 of cell (0, 0)
    assert out[3:, 3:].tolist() == [[0, 1], [5, 6]]


# --------------------------------------------------------------------------- MixedBatch.transport, carry, visibility


def _two_sample_batch(transport: torch.Tensor | None) -> MixedBatch:
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :, :2] = 1  # sample a on the left half, the partner on the right
    return MixedBatch(inputs=torch.zeros(2, 1, 4, 4), y_a=torch.tensor([0, 1]), y_b=torch.tensor([1, 0]),
                      index=torch.tensor([1, 0]), lam=torch.full((2,), 0.5), mask=mask, policy="puzzlemix",
                      transport=transport)


def test_object_visibility_follows_the_transport():
    """4 x 4 samples, 2 x 2 cells of 2 x 2 px.  Both objects fill the right column of cells (same place)."""
    objects = torch.zeros(2, 1, 4, 4)
    objects[:, :, :, 2:] = 1
    no_move = _two_sample_batch(None)
    vis_a, vis_b = metrics.object_visibility(no_move, objects)
    assert vis_a.tolist() == [0.0, 0.0] and vis_b.tolist() == [1.0, 1.0]  # a's object hidden under the partner
    ident = torch.tensor([[0, 1], [2, 3]])
    # sample 0: a's cells 1 and 3 (its object) moved to the left column; the partner stays in place
    # sample 1: a's top object cell moved left (cell 1 -> 0), the bottom-left cell keeps its background;
    #           the partner's object cell 3 is dropped (nothing moved to cell 3)
    transport = torch.stack([torch.stack([torch.tensor([[1, -1], [3, -1]]), ident]),
                             torch.stack([torch.tensor([[1, -1], [2, -1]]), torch.tensor([[-1, 1], [-1, -1]])])])
    moved = _two_sample_batch(transport)
    vis_a, vis_b = metrics.object_visibility(moved, objects)
    assert vis_a.tolist() == [1.0, 0.5]
    assert vis_b.tolist() == [1.0, 0.5]
    a, b = moved.carry(objects)
    assert torch.equal(a[0, 0, :, :2], torch.ones(4, 2)) and torch.equal(b[1, 0, 2:, 2:], torch.zeros(2, 2))
    assert torch.equal(no_move.carry(objects)[1], objects[torch.tensor([1, 0])])


def test_mixed_batch_checks_the_transport_field():
    with pytest.raises(ValueError, match="transport"):
        _two_sample_batch(torch.zeros(2, 2, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="transport"):
        _two_sample_batch(torch.zeros(2, 2, 2, 2))  # not int64
    with pytest.raises(ValueError, match="mask"):
        MixedBatch(inputs=torch.zeros(1, 1, 2, 2), y_a=torch.tensor([0]), y_b=torch.tensor([0]),
                   index=torch.tensor([0]), lam=torch.ones(1), transport=torch.zeros(1, 2, 1, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="maps"):
        _two_sample_batch(None).carry(torch.zeros(3, 1, 4, 4))
    moved = _two_sample_batch(torch.zeros(2, 2, 2, 2, dtype=torch.int64)).to("cpu")
    assert moved.transport.dtype == torch.int64


# --------------------------------------------------------------------------- the policy


def test_registry_entries_and_defaults():
    full, lite = POLICIES["puzzlemix"], POLICIES["puzzlemix_lite"]
    assert full.kind == lite.kind == "dynamic" and full.needs_model and lite.needs_model
    assert not full.exact_lerp and lite.exact_lerp
    assert full.options == {"correct_lam": True, "block_num": None, "beta": 1.2, "gamma": 0.5, "eta": 0.2,
                            "neigh_size": 4, "n_labels": 3, "transport": True, "t_eps": 0.8, "t_size": 4,
                            "adv_p": 0.0, "adv_eps": 10.0, "clean_lam": 0.0, "saliency_mode": None}
    assert lite.options == {"correct_lam": True, "block_num": None, "beta": 1.2, "gamma": 0.5, "eta": 0.2,
                            "neigh_size": 4, "saliency_mode": "eval"}


@pytest.mark.parametrize("block_num, grid", [(2, 8), (4, 8), (8, 8), (16, 16)])
def test_masks_lam_and_the_moved_inputs(block_num, grid):
    x, y = images(16, seed=block_num)
    out = mix("puzzlemix", x, y, model=small_cnn(), block_num=block_num, generator=torch.Generator().manual_seed(1))
    assert set(out.mask.unique().tolist()) <= {0.0, 0.5, 1.0}
    assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))
    blocks = out.mask.view(16, 1, block_num, 32 // block_num, block_num, 32 // block_num)
    assert bool((blocks == blocks[:, :, :, :1, :, :1]).all())  # constant on each block
    assert out.transport.shape == (16, 2, grid, grid) and out.transport.dtype == torch.int64
    a, b = out.carry(x, fill=x.mean((0, 2, 3)))
    torch.testing.assert_close(out.inputs, out.mask * a + (1 - out.mask) * b, rtol=0, atol=1e-6)
    for row in out.transport.reshape(32, -1):
        used = row[row >= 0]
        assert used.unique().numel() == used.numel()


def test_three_labels_give_half_masks_two_labels_do_not():
    x, _ = images(32, seed=3)
    y = torch.zeros(32, dtype=torch.long)
    three = [mix("puzzlemix", x, y, model=EnergyModel(), generator=torch.Generator().manual_seed(s)) for s in range(3)]
    assert any(bool((o.mask == 0.5).any()) for o in three)
    two = mix("puzzlemix", x, y, model=EnergyModel(), n_labels=2, generator=torch.Generator().manual_seed(0))
    assert set(two.mask.unique().tolist()) <= {0.0, 1.0}


def test_lite_is_two_labels_without_transport():
    x, y = images(12, seed=4)
    lite = mix("puzzlemix_lite", x, y, model=small_cnn(), generator=torch.Generator().manual_seed(2))
    same = mix("puzzlemix", x, y, model=small_cnn(), n_labels=2, transport=False,
               generator=torch.Generator().manual_seed(2))
    assert lite.policy == "puzzlemix_lite" and same.policy == "puzzlemix"
    assert lite.transport is None and same.transport is None and lite.aux_loss is None
    for name in ("inputs", "lam", "mask", "index"):
        assert torch.equal(getattr(lite, name), getattr(same, name))
    torch.testing.assert_close(lite.inputs, lite.mask * x + (1 - lite.mask) * x[lite.index], rtol=0, atol=0)


def test_same_seed_same_batch_with_every_option():
    x, y = images(8, seed=5)
    kw = dict(adv_p=0.7, clean_lam=1.0, t_size=2)
    one, two = (mix("puzzlemix", x, y, model=small_cnn(), generator=torch.Generator().manual_seed(9), **kw)
                for _ in range(2))
    for name in ("inputs", "lam", "mask", "index", "transport"):
        assert torch.equal(getattr(one, name), getattr(two, name))
    assert torch.equal(one.aux_loss, two.aux_loss)


def test_options_are_checked():
    x, _ = images(2, size=8)
    y = torch.zeros(2, dtype=torch.long)
    model = EnergyModel()
    cases = [({"n_labels": 4}, ValueError, "n_labels"), ({"n_labels": 1}, ValueError, "n_labels"),
             ({"n_labels": True}, TypeError, "n_labels"), ({"t_size": -1}, ValueError, "t_size"),
             ({"t_size": 0}, ValueError, "t_size"), ({"t_eps": -0.1}, ValueError, "t_eps"),
             ({"adv_p": 1.5}, ValueError, "adv_p"), ({"adv_p": -0.1}, ValueError, "adv_p"),
             ({"adv_eps": -1.0}, ValueError, "adv_eps"), ({"clean_lam": -1}, ValueError, "clean_lam"),
             ({"transport": "yes"}, TypeError, "transport"), ({"block_num": 16}, ValueError, "block_num"),
             ({"eta": -1.0}, ValueError, "eta"), ({"saliency_mode": "test"}, ValueError, "saliency_mode"),
             ({"neigh_size": 0}, ValueError, "neigh_size")]
    for options, error, name in cases:
        with pytest.raises(error, match=name):
            mix("puzzlemix", x, y, model=model, **options)
    with pytest.raises(TypeError, match="n_labels"):  # not an option of the reduced variant
        mix("puzzlemix_lite", x, y, model=model, n_labels=3)
    with pytest.raises(ValueError, match="model"):
        mix("puzzlemix", x, y)


def test_adversarial_noise_is_bounded_and_needs_no_extra_pass():
    x, y = images(8, seed=6)
    model = small_cnn()
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    kw = dict(block_num=4, transport=False, generator=torch.Generator().manual_seed(0))
    clean = mix("puzzlemix", x, y, model=model, **kw)
    torch.testing.assert_close(clean.inputs, clean.mask * x + (1 - clean.mask) * x[clean.index], rtol=0, atol=1e-6)
    kw["generator"] = torch.Generator().manual_seed(0)
    noisy = mix("puzzlemix", x, y, model=model, adv_p=1.0, adv_eps=10.0, **kw)
    assert len(calls) == 2  # one saliency pass per call, noise or not
    gap = noisy.inputs - (noisy.mask * x + (1 - noisy.mask) * x[noisy.index])
    assert gap.abs().max() <= 10 / 255 + 1e-6 and gap.abs().max() > 1e-3
    assert bool((noisy.inputs >= 0).all() and (noisy.inputs <= 1).all())


def test_clean_loss_is_the_scaled_cross_entropy_of_the_train_mode_pass():
    x, y = images(6, seed=7)
    model = small_cnn()
    reference = copy.deepcopy(model)
    out = mix("puzzlemix", x, y, model=model, clean_lam=0.5, generator=torch.Generator().manual_seed(0))
    loss = F.cross_entropy(reference(x), y)  # train mode: batch statistics
    torch.testing.assert_close(out.aux_loss, 2 * 0.5 * loss.detach())
    out.aux_loss.backward()  # its graph reaches the parameters, as the training step needs
    loss.backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert torch.equal(model[1].running_mean, reference[1].running_mean)  # the pass ran in train mode
    assert mix("puzzlemix", x, y, model=small_cnn(), generator=torch.Generator().manual_seed(0)).aux_loss is None


def test_clean_loss_reaches_the_training_step():
    from mixviz import losses

    x, y = images(6, seed=8)
    model = small_cnn()
    out = mix("puzzlemix", x, y, model=model, clean_lam=1.0, generator=torch.Generator().manual_seed(0))
    total = losses.mixup_cross_entropy(model(out.inputs), out.y_a, out.y_b, out.lam) + out.aux_loss
    total.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


# --------------------------------------------------------------------------- transport works


def same_place_batch(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image has its object, a bright 6 x 6 px square, at the same place (the centre); each
    image also has a dim texture on one half (top, bottom, left or right, drawn per image), so
    that two images of a pair differ somewhere and the graph cut can split the pair."""
    g = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.rand(b, 3, 32, 32, generator=g)
    rows = torch.arange(32)
    halves = torch.stack([(rows < 16)[:, None].expand(32, 32), (rows >= 16)[:, None].expand(32, 32),
                          (rows < 16)[None, :].expand(32, 32), (rows >= 16)[None, :].expand(32, 32)])
    texture = halves[torch.randint(0, 4, (b,), generator=g)]
    x = torch.where(texture[:, None], 0.3 * torch.rand(b, 3, 32, 32, generator=g), x)
    objects = torch.zeros(b, 1, 32, 32)
    objects[:, :, 13:19, 13:19] = 1
    x = torch.where(objects.bool(), 0.8 + 0.2 * torch.rand(b, 3, 1, 1, generator=g), x)
    return x, objects


def test_transport_keeps_both_objects_of_a_pair_at_the_same_place_visible():
    """Without transport the two objects of a pair share every pixel, so vis_a + vis_b = 1: they can
    never both be more than half visible.  With transport (the defaults, and with two labels) both
    are in most pairs.  lam ~ Beta(8, 8) keeps lam near 0.5, so that the lam prior does not hand a
    pair to one image whole (with alpha = 1: 24 % of the pairs, 45 % with two labels)."""
    x, objects = same_place_batch(64)
    y = torch.zeros(64, dtype=torch.long)
    both = {2: [], 3: []}
    for seed in range(3):
        for n_labels in (2, 3):
            kw = dict(model=EnergyModel(), alpha=8.0, n_labels=n_labels)
            still = mix("puzzlemix", x, y, transport=False, generator=torch.Generator().manual_seed(seed), **kw)
            vis_a, vis_b = metrics.object_visibility(still, objects)
            torch.testing.assert_close(vis_a + vis_b, torch.ones(64))
            moved = mix("puzzlemix", x, y, generator=torch.Generator().manual_seed(seed), **kw)
            vis_a, vis_b = metrics.object_visibility(moved, objects)
            assert bool((vis_a + vis_b >= 1 - 1e-6).all())  # the transport never loses object area here
            both[n_labels].append(((vis_a > 0.5) & (vis_b > 0.5)).float().mean())
    assert float(torch.stack(both[3]).mean()) > 0.65  # measured: 0.74 (0 without transport)
    assert float(torch.stack(both[2]).mean()) > 0.65  # measured: 0.75
