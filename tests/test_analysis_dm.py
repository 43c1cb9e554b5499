"""Tests of mixviz.analysis.dm, the numbers of the DM notebook: against
mixviz.losses and against the closed forms of mixup CE and DM on one
prediction."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

matplotlib.use("Agg")

from mixviz import losses, viz  # noqa: E402
from mixviz.analysis import dm, mix_at_lam  # noqa: E402
from mixviz.mixing import MixedBatch  # noqa: E402


def _closed_form(lam, eta, z_a, z_b, z_rest, c, w_a=None, w_b=None):
    """Mixup CE and DM, and their gradients, written out in float64 NumPy."""
    z = np.array([z_a, z_b] + [z_rest] * (c - 2), dtype=np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    p_a, p_b, r = p[0], p[1], p[2:].sum()
    unmixed = min(lam, 1 - lam) <= 1e-3  # the authors' threshold: an unmixed row gets the mixup CE
    w_a = (0.0 if unmixed else eta) if w_a is None else w_a
    w_b = (0.0 if unmixed else eta) if w_b is None else w_b
    mce = -(lam * math.log(p_a) + (1 - lam) * math.log(p_b))
    dec = w_a * math.log1p(r / p_a) + w_b * math.log1p(r / p_b)
    g_mce = np.array([p_a - lam, p_b - (1 - lam), p[2]])
    k_a, k_b = w_a * r / (p_a + r), w_b * r / (p_b + r)  # w_i sigmoid(rest - z_i)
    g_dm = g_mce + np.array([-k_a, -k_b, p[2] / r * (k_a + k_b)])
    return mce, mce + dec, g_mce, g_dm


# --------------------------------------------------------------------------- one prediction


@settings(max_examples=40, deadline=None)
@given(lam=st.floats(0.0, 1.0), eta=st.floats(0.0, 2.0), z_a=st.floats(-4, 4), z_b=st.floats(-4, 4),
       z_rest=st.floats(-4, 4), c=st.integers(3, 12))
def test_loss_table_is_the_closed_form(lam, eta, z_a, z_b, z_rest, c):
    table = dm.loss_table(lam, eta=eta, z_a=z_a, z_b=z_b, z_rest=z_rest, num_classes=c)
    mce, dm_value, g_mce, g_dm = _closed_form(lam, eta, z_a, z_b, z_rest, c)
    cols = ["grad_z_a", "grad_z_b", "grad_z_rest"]
    assert table.loc["mixup CE", "loss"] == pytest.approx(mce, rel=1e-9, abs=1e-9)
    assert table.loc["DM", "loss"] == pytest.approx(dm_value, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(table.loc["mixup CE", cols].to_numpy(float), g_mce, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(table.loc["DM", cols].to_numpy(float), g_dm, rtol=1e-7, atol=1e-9)
    assert table.loc["DM - mixup CE", "loss"] == pytest.approx(dm_value - mce, rel=1e-7, abs=1e-9)


def test_loss_table_uses_mixviz_losses():
    table = dm.loss_table(0.3, eta=0.5, mode="less", lam_power=0.5, z_a=1.0, z_b=-0.5, z_rest=0.2, num_classes=5)
    z = torch.tensor([[1.0, -0.5, 0.2, 0.2, 0.2]], dtype=torch.float64)
    y_a, y_b = torch.tensor([0]), torch.tensor([1])
    ref = losses.decoupled_mixup_loss(z, y_a, y_b, 0.3, eta=0.5, mode="less", lam_power=0.5)
    assert table.loc["DM", "loss"] == pytest.approx(float(ref), rel=1e-12)
    assert table.loc["mixup CE", "loss"] == pytest.approx(float(losses.mixup_cross_entropy(z, y_a, y_b, 0.3)))
    # mode "less" at lam 0.3: only class a (share 0.3 < 0.5) keeps its weight eta * 0.3 ** 0.5
    mce, dm_value, _, g_dm = _closed_form(0.3, 0.5, 1.0, -0.5, 0.2, 5, w_a=0.5 * 0.3 ** 0.5, w_b=0.0)
    assert table.loc["DM", "loss"] == pytest.approx(dm_value, rel=1e-9)
    assert table.loc["DM", "grad_z_b"] == pytest.approx(g_dm[1], rel=1e-9)
    assert list(table.index) == ["mixup CE", "DM", "DM - mixup CE"]
    assert table["p_a"].iloc[0] + table["p_b"].iloc[0] + table["p_rest"].iloc[0] == pytest.approx(1.0)


def test_at_eta_zero_dm_is_mixup_ce():
    table = dm.loss_table(0.6, eta=0.0, z_a=2.0, z_b=-1.0, z_rest=0.5)
    np.testing.assert_allclose(table.loc["DM"].to_numpy(float), table.loc["mixup CE"].to_numpy(float), atol=1e-15)
    grid = dm.loss_grid(0.6, eta=0.0, resolution=40)
    np.testing.assert_array_equal(np.isnan(grid["dm"]), np.isnan(grid["mixup_ce"]))
    ok = ~np.isnan(grid["dm"])
    np.testing.assert_allclose(grid["dm"][ok], grid["mixup_ce"][ok], atol=1e-12)
    assert grid["argmin"]["dm"] == grid["argmin"]["mixup_ce"]
    assert all(math.isnan(v) for v in grid["argmin"]["decoupled"])   # zero everywhere: no minimum to mark


def test_dm_raises_the_missing_class_without_lowering_the_found_one():
    """The model found only object a (p_a high, p_b tiny) of a 50/50 mix:
    mixup CE lowers z_a; the decoupled term raises both against the rest."""
    table = dm.loss_table(0.5, eta=1.0, z_a=3.0, z_b=0.0, z_rest=0.0)
    assert table.loc["mixup CE", "grad_z_a"] > 0            # pushed down, towards p_a = 0.5
    assert table.loc["DM - mixup CE", "grad_z_a"] < 0       # the decoupled part pushes it up
    assert table.loc["DM - mixup CE", "grad_z_b"] < table.loc["DM - mixup CE", "grad_z_a"] < 0
    assert table.loc["DM - mixup CE", "grad_z_rest"] > 0    # and the other classes down


# --------------------------------------------------------------------------- the (p_a, p_b) plane


@pytest.mark.parametrize("lam", [0.1, 0.3, 0.5, 0.7, 0.95])
def test_mixup_ce_minimum_is_at_lam(lam):
    grid = dm.loss_grid(lam, eta=0.1, resolution=100)
    p_a, p_b = grid["argmin"]["mixup_ce"]
    assert abs(p_a - lam) <= grid["step"] and abs(p_b - (1 - lam)) <= grid["step"]


def test_grid_cells_are_the_losses_at_those_predictions():
    grid = dm.loss_grid(0.7, eta=0.3, mode="both", lam_power=1.0, num_classes=6, resolution=20)
    p = grid["p"]
    np.testing.assert_allclose(p, (np.arange(20) + 0.5) / 20)
    assert grid["step"] == pytest.approx(0.05)
    i_a, i_b = 5, 8                                           # p_a = 0.275, p_b = 0.425
    rest = (1 - p[i_a] - p[i_b]) / 4
    z = torch.tensor([[p[i_a], p[i_b], rest, rest, rest, rest]], dtype=torch.float64).log()
    y_a, y_b = torch.tensor([0]), torch.tensor([1])
    mce = float(losses.mixup_cross_entropy(z, y_a, y_b, 0.7))
    dm_value = float(losses.decoupled_mixup_loss(z, y_a, y_b, 0.7, eta=0.3, mode="both", lam_power=1.0))
    assert grid["mixup_ce"][i_b, i_a] == pytest.approx(mce, rel=1e-12)     # rows: p_b, columns: p_a
    assert grid["dm"][i_b, i_a] == pytest.approx(dm_value, rel=1e-12)
    impossible = p[None, :] + p[:, None] >= 1
    assert np.isnan(grid["mixup_ce"][impossible]).all() and not np.isnan(grid["mixup_ce"][~impossible]).any()
    assert (grid["dm"][~impossible] >= grid["mixup_ce"][~impossible]).all()   # the decoupled part is >= 0
    assert grid["lam"] == 0.7 and grid["eta"] == 0.3 and grid["num_classes"] == 6


def test_decoupled_part_rewards_both_classes():
    """Alone, the decoupled part is smallest on the edge p_a + p_b = 1 - step
    at the balanced split (both classes confident against the rest, whatever
    lam says); DM's minimum moves from mixup CE's towards it."""
    grid = dm.loss_grid(0.8, eta=1.0, resolution=100)
    dec_a, dec_b = grid["argmin"]["decoupled"]
    assert dec_a + dec_b == pytest.approx(0.99) and abs(dec_a - dec_b) <= grid["step"]
    (mce_a, mce_b), (dm_a, dm_b) = grid["argmin"]["mixup_ce"], grid["argmin"]["dm"]
    assert dm_a + dm_b == pytest.approx(mce_a + mce_b)
    assert dm_b > mce_b and dm_a < mce_a   # more confident in the class with the smaller share
    weak = dm.loss_grid(0.8, eta=0.01, resolution=100)
    assert weak["argmin"]["dm"][1] <= dm_b  # the move grows with eta


def test_grid_and_table_check_their_arguments():
    with pytest.raises(ValueError, match="lam"):
        dm.loss_grid(1.5)
    with pytest.raises(ValueError, match="mode"):
        dm.loss_grid(0.5, mode="sometimes")
    with pytest.raises(ValueError, match="num_classes"):
        dm.loss_table(0.5, num_classes=2)
    with pytest.raises(ValueError, match="eta"):
        dm.loss_table(0.5, eta=-1.0)
    with pytest.raises(TypeError, match="z_a"):
        dm.loss_table(0.5, z_a="big")
    with pytest.raises(ValueError, match="resolution"):
        dm.loss_grid(0.5, resolution=2)


# --------------------------------------------------------------------------- SGD on one mixed batch


def _batch(n=32, size=8, lam=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)
    return mix_at_lam("mixup", x, y, lam, seed=seed)


def test_sgd_trace_at_eta_zero_gives_the_same_run_twice():
    trace = dm.sgd_trace(_batch(), 5, steps=20, eta=0.0)
    a = trace[trace["loss_name"] == "mixup_ce"].drop(columns="loss_name").reset_index(drop=True)
    b = trace[trace["loss_name"] == "dm"].drop(columns="loss_name").reset_index(drop=True)
    # the same run up to float32 rounding: DM writes its gradient by hand, mixup CE goes through autograd
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-6)
    assert list(trace.columns) == ["loss_name", "step", "loss", "p_a", "p_b", "p_major", "p_minor", "p_rest", "top2"]
    assert len(trace) == 40 and list(a["step"]) == list(range(20))


def test_sgd_trace_first_step_is_the_start_and_matches_the_losses():
    mixed = _batch()
    trace = dm.sgd_trace(mixed, 5, steps=3, eta=0.5, model="linear", seed=3)
    torch.manual_seed(3)
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    with torch.no_grad():
        z = start(mixed.inputs)
    first = trace.groupby("loss_name").head(1).set_index("loss_name")
    mce = float(losses.mixup_cross_entropy(z, mixed.y_a, mixed.y_b, mixed.lam))
    dmv = float(losses.decoupled_mixup_loss(z, mixed.y_a, mixed.y_b, mixed.lam, eta=0.5))
    assert first.loc["mixup_ce", "loss"] == pytest.approx(mce, rel=1e-5)
    assert first.loc["dm", "loss"] == pytest.approx(dmv, rel=1e-5)
    pair = mixed.y_a != mixed.y_b
    p = z.softmax(1)
    p_a = p.gather(1, mixed.y_a[:, None])[:, 0][pair].mean()
    assert first.loc["dm", "p_a"] == pytest.approx(float(p_a), rel=1e-5)
    # lam = 0.7 everywhere: a has the larger share
    assert first.loc["dm", "p_major"] == pytest.approx(first.loc["dm", "p_a"])
    assert trace.attrs["share_major"] == pytest.approx(0.7)


def test_free_logits_go_to_the_mixup_target_and_dm_empties_the_rest_faster():
    mixed = _batch(lam=0.7)
    trace = dm.sgd_trace(mixed, 5, steps=200, lr=0.5, momentum=0.0, eta=1.0, model="logits")
    mce = trace[trace["loss_name"] == "mixup_ce"].set_index("step")
    dmt = trace[trace["loss_name"] == "dm"].set_index("step")
    assert mce.loc[199, "p_a"] == pytest.approx(0.7, abs=0.03) and mce.loc[199, "p_b"] == pytest.approx(0.3, abs=0.03)
    assert (dmt.loc[1:, "p_rest"] < mce.loc[1:, "p_rest"]).all()
    assert (dmt.loc[1:, "p_minor"] > mce.loc[1:, "p_minor"]).all()
    assert mce.loc[0, "p_a"] == pytest.approx(0.2)   # free logits start at 0: uniform over 5 classes


def test_sgd_trace_is_reproducible_and_leaves_global_rng_alone():
    mixed = _batch()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = dm.sgd_trace(mixed, 5, steps=5, eta=0.1, seed=1)
    after = torch.rand(1)
    b = dm.sgd_trace(mixed, 5, steps=5, eta=0.1, seed=1)
    assert torch.equal(before, after)
    np.testing.assert_array_equal(a.drop(columns="loss_name").to_numpy(), b.drop(columns="loss_name").to_numpy())


def test_sgd_trace_checks_its_arguments():
    mixed = _batch()
    with pytest.raises(TypeError, match="mixed"):
        dm.sgd_trace("batch", 5)
    with pytest.raises(ValueError, match="model"):
        dm.sgd_trace(mixed, 5, model="resnet")
    with pytest.raises(ValueError, match="y_a"):
        dm.sgd_trace(mixed, 3)
    same = MixedBatch(inputs=mixed.inputs, y_a=mixed.y_a, y_b=mixed.y_a, index=mixed.index, lam=mixed.lam)
    with pytest.raises(ValueError, match="pair"):
        dm.sgd_trace(same, 5)


# --------------------------------------------------------------------------- pictures


def test_pictures_of_the_dm_notebook():
    import matplotlib.pyplot as plt

    grid = dm.loss_grid(0.7, eta=1.0, resolution=30)
    fig = viz.loss_landscape(grid)
    assert [ax.get_title() for ax in fig.axes[:3:1]][0] == "mixup CE"
    assert len(fig.axes) == 6  # three panels and their colour bars
    flat = viz.loss_landscape(dm.loss_grid(0.7, eta=0.0, resolution=30))
    assert any("zero everywhere" in t.get_text() for t in flat.axes[1].texts)
    bars = viz.gradient_bars(dm.loss_table(0.5, eta=1.0, z_a=3.0))
    heights = [p.get_height() for p in bars.axes[0].patches]
    table = dm.loss_table(0.5, eta=1.0, z_a=3.0)
    np.testing.assert_allclose(heights, [*table.loc["mixup CE", ["grad_z_a", "grad_z_b", "grad_z_rest"]],
                                         *table.loc["DM", ["grad_z_a", "grad_z_b", "grad_z_rest"]]])
    trace = dm.sgd_trace(_batch(), 5, steps=5, eta=0.1)
    lines = viz.sgd_trace_plot(trace)
    assert len(lines.axes[0].lines) == 4 + 2   # 2 losses x (major, minor) and the two target lines
    with pytest.raises(ValueError, match="grid"):
        viz.loss_landscape({"p": [0.5]})
    plt.close("all")
