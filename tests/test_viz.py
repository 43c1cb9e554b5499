"""Tests of mixviz.viz: every picture returns a Figure with the expected panels,
draws exactly the data it was given, names methods / values in its titles and
rejects bad arguments with errors that name them."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from mixviz import metrics, viz  # noqa: E402
from mixviz.mixing.batch import MixedBatch  # noqa: E402
from mixviz.viz import style  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _titles(fig: Figure) -> str:
    return " | ".join(ax.get_title() for ax in fig.axes) + " | " + (fig._suptitle.get_text() if fig._suptitle else "")


# --------------------------------------------------------------------------- synthetic data


def _images(b: int = 6, c: int = 3, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g), torch.randint(0, 5, (b,), generator=g)


def _box_batch(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, policy: str = "cutmix") -> MixedBatch:
    """CutMix-like batch: the left ``k`` columns come from the partner."""
    b, _, h, w = x.shape
    mask = torch.ones(b, 1, h, w)
    cols = torch.arange(w).view(1, 1, 1, w)
    k = torch.arange(b).remainder(w).view(b, 1, 1, 1) + 1
    mask = torch.where(cols < k, 0.0, mask)
    inputs = torch.lerp(x[index], x, mask)
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=mask.mean((1, 2, 3)), mask=mask,
                      policy=policy)


def _blend_batch(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, lam: float = 0.3) -> MixedBatch:
    lam_t = torch.full((x.shape[0],), lam)
    inputs = torch.lerp(x[index], x, lam_t.view(-1, 1, 1, 1))
    return MixedBatch(inputs=inputs, y_a=y, y_b=y[index], index=index, lam=lam_t, policy="mixup")


def _history(epochs: int = 5, seed: int = 0, top2: float = 0.5) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    acc = np.clip(0.5 + 0.08 * e + r.normal(0, 0.01, epochs), 0, 1)
    return pd.DataFrame({"epoch": e, "lr": 0.1 / e, "train_loss": 2.0 / e, "test_acc": acc, "test_nll": 1 - acc / 2,
                         "test_ece": 0.1 / e, "mixed_top1": acc, "mixed_top2": top2 * (1 - np.exp(-e)),
                         "epoch_sec": np.full(epochs, 3.0), "images_per_sec": np.full(epochs, 1000.0)})


def _results() -> pd.DataFrame:
    rows = []
    spec = {("none", "ce"): (0.80, 3.0), ("mixup", "mixup_ce"): (0.84, 3.2), ("cutmix", "dm"): (0.88, 3.3),
            ("puzzlemix", "mixup_ce"): (0.87, 6.0)}
    for (policy, loss), (acc, sec) in spec.items():
        for seed in range(3):
            rows.append({"policy": policy, "loss": loss, "seed": seed, "test_acc": acc + 0.01 * (seed - 1),
                         "ece": 0.05, "nll": 0.5, "mixed_top1": 0.9, "mixed_top2": acc / 2 + 0.02 * seed,
                         "sec_per_epoch": sec + 0.1 * seed, "epochs": 10, "dataset": "clutter", "model": "smallcnn"})
    return pd.DataFrame(rows)


KINDS = {"none": "static", "mixup": "static", "cutmix": "static", "puzzlemix": "dynamic"}


# --------------------------------------------------------------------------- style and save


def test_theme_leaves_global_settings_unchanged():
    before = dict(plt.rcParams)
    fig = viz.training_curves({"m": _history()})
    assert isinstance(fig, Figure)
    after = dict(plt.rcParams)
    assert {k for k in before if before[k] != after[k]} == set()


def _text_sizes(fig: Figure) -> dict[str, float]:
    """Size (pt) of every visible text of ``fig`` after drawing, by its text."""
    from matplotlib.text import Text

    fig.canvas.draw()
    return {t.get_text(): t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()}


def test_an_enclosing_theme_or_rc_context_sets_the_text_size():
    """Projector mode: one line makes every picture's text bigger."""
    default = _text_sizes(viz.training_curves({"m": _history()}))
    with viz.theme("talk", font_scale=1.6):
        talk = _text_sizes(viz.training_curves({"m": _history()}))
    with plt.rc_context({"font.size": 20}):
        big = _text_sizes(viz.training_curves({"m": _history()}))
    with plt.rc_context({"axes.titlesize": 31}):
        titled = _text_sizes(viz.training_curves({"m": _history()}))
    plt.close("all")
    words = {k for k in default if not k.replace(".", "").replace("−", "").isdigit()}  # titles, labels, legend
    assert len(words) >= 4 and words <= set(talk) and words <= set(big)
    assert all(talk[k] > 1.5 * default[k] for k in words), (default, talk)
    assert all(big[k] > 1.5 * default[k] for k in words), (default, big)
    assert min(talk.values()) > max(default.values())  # tick labels too
    assert max(titled.values()) == 31 and min(titled.values()) == min(default.values())
    assert _text_sizes(viz.training_curves({"m": _history()})) == default  # nothing leaks out of the blocks
    with pytest.raises(ValueError, match="context"):
        with viz.theme("huge"):
            pass


def _look(artist) -> tuple:
    """Face colour, edge colour and hatch of a patch, as a legend entry must show them."""
    return (matplotlib.colors.to_hex(artist.get_facecolor(), keep_alpha=True),
            matplotlib.colors.to_hex(artist.get_edgecolor(), keep_alpha=True), artist.get_hatch())


def _legend_patches(legend) -> list:
    return [h for h in legend.legend_handles if isinstance(h, matplotlib.patches.Patch)]


def test_reliability_legend_shows_the_colours_drawn():
    """The gap over the accuracy bars (under-confident) and above them
    (over-confident) each have their legend entry, in the colour drawn."""
    bins = pd.DataFrame({"bin_lower": [0.0, 0.5], "bin_upper": [0.5, 1.0], "confidence": [0.3, 0.9],
                         "accuracy": [0.45, 0.7], "count": [10, 10]})
    fig = viz.reliability_diagrams({"m": bins}, {"m": 0.2})
    drawn = {_look(p) for p in fig.axes[0].patches}
    handles = _legend_patches(fig.legends[0])
    assert len(handles) == 3 and {_look(h) for h in handles} <= drawn
    assert len(drawn) == 3  # accuracy, gap above, gap inside: no colour the legend does not name
    plt.close(fig)


def test_method_bars_legend_shows_the_colours_drawn():
    results = _results()
    single = results[(results.policy == "mixup") & (results.seed > 0)].index  # mixup on one seed: hollow
    fig = viz.method_bars(results.drop(index=single), metric="test_acc", kinds=KINDS)
    ax = fig.axes[0]
    drawn = {_look(p) for p in ax.patches}
    handles = _legend_patches(fig.legends[0])
    assert {_look(h) for h in handles} == drawn
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"no mixing", "static mixing + DM loss", "dynamic mixing"} <= set(labels)
    assert any("static mixing (" in t for t in labels)  # the hollow bar has its own entry
    grey = matplotlib.colors.to_hex(ax.patches[[t.get_text() for t in ax.get_yticklabels()].index("none+ce")]
                                    .get_facecolor())
    assert grey == style.FAMILY_TONES["baseline"][0]  # plain training is not drawn as a static method
    plt.close(fig)


def test_method_styles_one_map():
    s = {m: style.method_style(m) for m in ("none+ce", "mixup+mixup_ce", "mixup+dm", "cutmix+mixup_ce",
                                             "puzzlemix+mixup_ce", "average+midpoint")}
    assert s["none+ce"].family == "baseline" and s["puzzlemix+mixup_ce"].family == "dynamic"
    assert s["mixup+dm"].color == s["mixup+mixup_ce"].color and s["mixup+dm"].hatch == style.DM_HATCH
    assert s["mixup+dm"].linestyle != s["mixup+mixup_ce"].linestyle
    assert s["cutmix+mixup_ce"].family_color == s["mixup+mixup_ce"].family_color
    looks = {(v.color, v.marker, v.linestyle) for v in s.values()}
    assert len(looks) == len(s) and len({v.marker for k, v in s.items() if k != "mixup+dm"}) == len(s) - 1
    assert s["average+midpoint"].family == "midpoint"


def test_memorisation_lines_differ_in_grayscale():
    """mixup, CutMix and PuzzleMix lines differ by marker (and DM by line style), not by colour alone."""
    h = _history()
    h = h.assign(memorised=0.1, still_right=0.5)
    names = ["none+ce", "mixup+mixup_ce", "mixup+dm", "cutmix+mixup_ce", "puzzlemix+mixup_ce"]
    fig = viz.memorisation_curves({n: [h] for n in names})
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == names
    assert len({(ln.get_marker(), ln.get_linestyle()) for ln in lines}) == len(names)
    legend = {t.get_text(): h for t, h in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    for ln in lines:
        assert (legend[ln.get_label()].get_color(), legend[ln.get_label()].get_marker()) == \
            (ln.get_color(), ln.get_marker())
    plt.close(fig)


def test_method_colors_are_stable_and_distinct():
    a = viz.method_colors(["x", "y", "z"])
    b = viz.method_colors(["x", "y", "z"])
    assert a == b and len(set(a.values())) == 3
    assert len(set(viz.method_colors([f"m{i}" for i in range(14)]).values())) == 14


def test_save_writes_png_atomically(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = viz.save(fig, tmp_path / "sub" / "line.png", dpi=50)
    assert path == tmp_path / "sub" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path / "sub") == ["line.png"]  # no temporary file left behind
    viz.save(fig, tmp_path / "line.pdf")
    assert (tmp_path / "line.pdf").read_bytes()[:4] == b"%PDF"


def test_save_rejects_bad_arguments(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(TypeError, match="fig"):
        viz.save("not a figure", tmp_path / "a.png")
    with pytest.raises(ValueError, match="path"):
        viz.save(fig, tmp_path / "a.unknown")
    with pytest.raises(ValueError, match="dpi"):
        viz.save(fig, tmp_path / "a.png", dpi=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- mixed-sample gallery


def test_gallery_titles_a_fixed_lam_column_with_the_measured_share():
    from mixviz import analysis

    x, y = _images(size=16)
    batches = {"cutmix, λ = 0.25": analysis.mix_at_lam("cutmix", x, y, 0.25),
               "drawn": analysis.fixed_mixed_batch("cutmix", x, y, seed=3)}
    fig = viz.mixed_samples_gallery(batches, n=3)
    share = float(batches["cutmix, λ = 0.25"].mask[:3].mean())
    assert abs(share - 0.25) <= 0.03
    titles = [ax.get_title() for ax in fig.axes]
    assert f"cutmix, λ = 0.25\npixels from a: {share:.2f}" in titles
    assert "drawn" in titles  # Beta draws differ per row: no single share to name
    plt.close(fig)


def test_gallery_title():
    x, y = _images()
    batch = {"cutmix": _box_batch(x, y, torch.arange(6).flip(0))}
    fig = viz.mixed_samples_gallery(batch, n=2, title="64 px\nsecond line")
    assert fig.get_suptitle() == "64 px\nsecond line"
    plt.close(fig)
    with pytest.raises(TypeError, match="title"):
        viz.mixed_samples_gallery(batch, n=2, title=3)


def test_soft_label_text():
    assert viz.soft_label_text(0.63, 0, 1, ["cat", "dog"]) == "0.63 cat / 0.37 dog"
    assert viz.soft_label_text(0.4, 2, 2, ["cat", "dog", "cow"]) == "1.00 cow"
    assert viz.soft_label_text(0.25, 4, 7) == '0.25 "4" / 0.75 "7"'


def test_gallery_draws_the_mixed_images_masks_and_labels():
    x, y = _images()
    index = torch.tensor([3, 2, 1, 0, 5, 4])
    batches = {"mixup": _blend_batch(x, y, index, 0.3), "cutmix": _box_batch(x, y, index)}
    names = ["cat", "dog", "cow", "hen", "pig"]
    n = 3
    fig = viz.mixed_samples_gallery(batches, class_names=names, n=n)
    assert isinstance(fig, Figure)
    # n rows x (mixup image, cutmix image, cutmix mask) + one colour bar
    assert len(fig.axes) == n * 3 + 1
    grid = np.array(fig.axes[: n * 3]).reshape(n, 3)
    titles = _titles(fig)
    assert "mixup" in titles and "cutmix" in titles
    cut = batches["cutmix"]
    for row in range(n):
        np.testing.assert_allclose(grid[row, 0].images[0].get_array(),
                                   batches["mixup"].inputs[row].permute(1, 2, 0).numpy(), atol=1e-6)
        np.testing.assert_allclose(grid[row, 1].images[0].get_array(), cut.inputs[row].permute(1, 2, 0).numpy(),
                                   atol=1e-6)
        np.testing.assert_allclose(grid[row, 2].images[0].get_array(), cut.mask[row, 0].numpy())
        lam = float(cut.lam[row])
        label = grid[row, 1].get_xlabel()
        assert f"λ = {lam:.2f}" in label
        assert viz.soft_label_text(lam, int(y[row]), int(y[index[row]]), names) in label
        assert "λ = 0.30" in grid[row, 0].get_xlabel()


def test_gallery_grey_images_and_no_mask_has_no_colour_bar():
    x, y = _images(c=1)
    fig = viz.mixed_samples_gallery({"mixup": _blend_batch(x, y, torch.arange(6).flip(0))}, n=2)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(),
                               (0.3 * x[0, 0] + 0.7 * x[5, 0]).numpy(), atol=1e-6)


def test_gallery_rejects_bad_input():
    x, y = _images()
    index = torch.arange(6).flip(0)
    good = {"cutmix": _box_batch(x, y, index)}
    with pytest.raises(TypeError, match="batches"):
        viz.mixed_samples_gallery([good["cutmix"]])
    with pytest.raises(TypeError, match=r"batches\['x'\]"):
        viz.mixed_samples_gallery({"x": x})
    with pytest.raises(ValueError, match="batches"):
        viz.mixed_samples_gallery({})
    with pytest.raises(ValueError, match="n"):
        viz.mixed_samples_gallery(good, n=7)
    with pytest.raises(ValueError, match="n"):
        viz.mixed_samples_gallery(good, n=0)
    other = _box_batch(x, (y + 1) % 5, index)
    with pytest.raises(ValueError, match="same source batch"):
        viz.mixed_samples_gallery({"a": good["cutmix"], "b": other})
    with pytest.raises(ValueError, match="class_names"):
        viz.mixed_samples_gallery(good, class_names=["only"], n=2)
    points = MixedBatch(inputs=torch.rand(6, 2), y_a=y, y_b=y, index=index, lam=torch.ones(6))
    with pytest.raises(ValueError, match="images"):
        viz.mixed_samples_gallery({"p": points})


# --------------------------------------------------------------------------- decision boundaries


def _linear_model() -> nn.Module:
    """logits = [0, x1 - x2]: p(class 1) = sigmoid(x1 - x2)."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
        model.bias.zero_()
    return model


def test_probability_grid_reference_values_and_mode_restored():
    model = _linear_model().train()
    X = torch.tensor([[0.0, -1.0], [2.0, 3.0]])
    grid = viz.probability_grid(model, X, resolution=7, margin=0.5, batch_size=10)
    assert model.training  # mode restored
    assert grid["xx"].shape == grid["yy"].shape == (7, 7) and grid["probs"].shape == (7, 7, 2)
    np.testing.assert_allclose(grid["xx"][0], np.linspace(-0.5, 2.5, 7))
    np.testing.assert_allclose(grid["yy"][:, 0], np.linspace(-1.5, 3.5, 7))
    expected = 1 / (1 + np.exp(-(grid["xx"] - grid["yy"])))
    np.testing.assert_allclose(grid["probs"][..., 1], expected, atol=1e-6)
    np.testing.assert_allclose(grid["probs"].sum(-1), 1.0, atol=1e-6)


def test_probability_grid_rejects_bad_input():
    model = _linear_model()
    with pytest.raises(TypeError, match="model"):
        viz.probability_grid(lambda t: t, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="X"):
        viz.probability_grid(model, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="resolution"):
        viz.probability_grid(model, torch.zeros(3, 2), resolution=1)
    with pytest.raises(ValueError, match="margin"):
        viz.probability_grid(model, torch.zeros(3, 2), margin=-1.0)
    with pytest.raises(ValueError, match="logits"):
        viz.probability_grid(nn.Linear(2, 1), torch.zeros(3, 2))


def test_decision_boundaries_binary():
    model = _linear_model()
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.4]])
    y = np.array([0, 1, 1])
    grids = {"none+ce": viz.probability_grid(model, X, resolution=20),
             "mixup+mixup_ce": viz.probability_grid(model, X, resolution=30)}
    fig = viz.decision_boundaries(grids, points=(X, y), notes={"none+ce": "test acc 97.0 %"})
    assert len(fig.axes) == 3  # two panels + colour bar
    titles = _titles(fig)
    assert "none+ce" in titles and "mixup+mixup_ce" in titles and "test acc 97.0 %" in titles
    for ax, grid in zip(fig.axes, grids.values()):
        np.testing.assert_allclose(ax.images[0].get_array(), grid["probs"][..., 1])
        drawn = np.concatenate([c.get_offsets() for c in ax.collections if hasattr(c, "get_offsets")
                                and len(c.get_offsets()) and c.get_offsets().shape[1] == 2
                                and type(c).__name__ == "PathCollection"])
        np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(X, axis=0))
    assert "probability" in fig.axes[-1].get_ylabel()


def test_decision_boundaries_accepts_ij_grids_and_many_classes():
    xs, ys = np.linspace(0, 1, 5), np.linspace(0, 2, 4)
    xx, yy = np.meshgrid(xs, ys)
    logits = np.stack([xx, yy, 1 - xx], axis=-1)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    fig_xy = viz.decision_boundaries({"m": {"xx": xx, "yy": yy, "probs": probs}}, class_names=["a", "b", "c"])
    fig_ij = viz.decision_boundaries({"m": {"xx": xx.T, "yy": yy.T, "probs": probs.transpose(1, 0, 2)}})
    np.testing.assert_allclose(fig_xy.axes[0].images[0].get_array(), fig_ij.axes[0].images[0].get_array())
    assert len(fig_xy.axes) == 2


def test_decision_boundaries_rejects_bad_input():
    good = viz.probability_grid(_linear_model(), np.zeros((2, 2)), resolution=5)
    with pytest.raises(TypeError, match="grids"):
        viz.decision_boundaries([good])
    with pytest.raises(ValueError, match=r"grids\['m'\]"):
        viz.decision_boundaries({"m": {"xx": good["xx"], "yy": good["yy"]}})
    with pytest.raises(ValueError, match=r"grids\['m'\]"):
        viz.decision_boundaries({"m": {**good, "probs": good["probs"][:2]}})
    with pytest.raises(ValueError, match="probabilities"):
        viz.decision_boundaries({"m": {**good, "probs": good["probs"] * 3}})
    three = {**good, "probs": np.full((5, 5, 3), 1 / 3)}
    with pytest.raises(ValueError, match="same number of classes"):
        viz.decision_boundaries({"a": good, "b": three})
    with pytest.raises(ValueError, match="points"):
        viz.decision_boundaries({"m": good}, points=(np.zeros((3, 3)), np.zeros(3)))
    with pytest.raises(ValueError, match="points"):
        viz.decision_boundaries({"m": good}, points=(np.zeros((3, 2)), np.array([0, 1, 2])))


# --------------------------------------------------------------------------- reliability diagrams


def _bins(seed: int, temperature: float) -> tuple[pd.DataFrame, float]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (400,), generator=g)
    logits = torch.randn(400, 5, generator=g)
    logits[torch.arange(400), labels] += 1.5
    probs = (logits / temperature).softmax(1)
    return metrics.reliability_bins(probs, labels, n_bins=10), metrics.expected_calibration_error(probs, labels, 10)


def test_reliability_diagrams_bars_and_ece_titles():
    (b1, e1), (b2, e2) = _bins(0, 0.3), _bins(1, 1.0)
    fig = viz.reliability_diagrams({"none+ce": b1, "cutmix+dm": b2}, {"none+ce": e1, "cutmix+dm": e2})
    assert len(fig.axes) == 4  # diagram + counts per method
    titles = _titles(fig)
    assert "none+ce" in titles and "cutmix+dm" in titles
    assert f"ECE = {100 * e1:.2f} %" in titles and f"ECE = {100 * e2:.2f} %" in titles
    shown = viz.display_bins(b1)
    full = shown[shown["count"] > 0]
    accuracy_bars = [p.get_height() for p in fig.axes[0].patches[: len(full)]]
    np.testing.assert_allclose(accuracy_bars, full["accuracy"].to_numpy())
    count_bars = [p.get_height() for p in fig.axes[1].patches]
    np.testing.assert_allclose(count_bars, 100 * shown["count"] / shown["count"].sum())


def test_display_bins_merges_the_confidence_one_bin():
    bins = pd.DataFrame({"bin_lower": [0.0, 0.5, 1.0], "bin_upper": [0.5, 1.0, 1.0],
                         "confidence": [0.4, 0.8, 1.0], "accuracy": [0.5, 0.6, 1.0], "count": [2, 3, 1]})
    shown = viz.display_bins(bins)
    assert len(shown) == 2 and shown["count"].tolist() == [2, 4]
    assert shown.loc[1, "confidence"] == pytest.approx((0.8 * 3 + 1.0) / 4)
    assert shown.loc[1, "accuracy"] == pytest.approx((0.6 * 3 + 1.0) / 4)
    empty = bins.assign(count=[2, 0, 1], confidence=[0.4, np.nan, 1.0], accuracy=[0.5, np.nan, 1.0])
    shown = viz.display_bins(empty)
    assert shown.loc[1, "confidence"] == 1.0 and shown.loc[1, "count"] == 1


def test_reliability_diagrams_reject_bad_input():
    b, e = _bins(0, 1.0)
    with pytest.raises(ValueError, match="ece"):
        viz.reliability_diagrams({"m": b}, {"other": e})
    with pytest.raises(ValueError, match=r"ece\['m'\]"):
        viz.reliability_diagrams({"m": b}, {"m": 1.5})
    with pytest.raises(ValueError, match="count"):
        viz.reliability_diagrams({"m": b.drop(columns="count")}, {"m": e})
    with pytest.raises(TypeError, match=r"bins\['m'\]"):
        viz.reliability_diagrams({"m": b.to_dict()}, {"m": e})
    with pytest.raises(ValueError, match="accuracy"):
        viz.reliability_diagrams({"m": b.assign(accuracy=b["accuracy"] * 100)}, {"m": e})


# --------------------------------------------------------------------------- mixed accuracy and curves


def test_mixed_accuracy_plot_lines_and_final_bars():
    histories = {"mixup+mixup_ce": _history(seed=0, top2=0.4), "cutmix+dm": _history(seed=1, top2=0.6)}
    fig = viz.mixed_accuracy_plot(histories)
    assert len(fig.axes) == 2
    for ax, col in zip(fig.axes, ("mixed_top1", "mixed_top2")):
        assert [line.get_label() for line in ax.lines] == list(histories)
        for line, frame in zip(ax.lines, histories.values()):
            np.testing.assert_allclose(line.get_ydata(), 100 * frame[col].to_numpy())
    results = _results()
    fig = viz.mixed_accuracy_plot(histories, final=results)
    assert len(fig.axes) == 3
    table = viz.final_mixed_accuracy(results)
    ref = results.assign(method=results.policy + "+" + results.loss).groupby("method", sort=False)["mixed_top2"]
    np.testing.assert_allclose(table["top2"], 100 * ref.mean().to_numpy())
    np.testing.assert_allclose(table["top2_std"], 100 * ref.std().to_numpy())
    heights = [p.get_height() for p in fig.axes[2].patches][: len(table)]
    np.testing.assert_allclose(heights, table["top1"])


def test_mixed_accuracy_plot_skips_nan_and_rejects_bad_input():
    h = _history()
    h.loc[1, "mixed_top2"] = np.nan
    fig = viz.mixed_accuracy_plot({"m": h})
    assert len(fig.axes[1].lines[0].get_ydata()) == len(h) - 1
    with pytest.raises(ValueError, match="mixed_top2"):
        viz.mixed_accuracy_plot({"m": h.drop(columns="mixed_top2")})
    with pytest.raises(ValueError, match="fractions"):
        viz.mixed_accuracy_plot({"m": h.assign(mixed_top1=h.mixed_top1 * 100)})
    with pytest.raises(TypeError, match="histories"):
        viz.mixed_accuracy_plot([h])
    with pytest.raises(ValueError, match="final"):
        viz.mixed_accuracy_plot({"m": h}, final=_results().drop(columns="mixed_top1"))


def test_training_curves_one_panel_per_metric():
    histories = {"a": _history(seed=0), "b": _history(seed=1)}
    metrics_ = ("train_loss", "test_acc", "lr")
    fig = viz.training_curves(histories, metrics=metrics_)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_ylabel() == style.metric_label("train_loss")
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), histories["b"]["train_loss"])
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), 100 * histories["a"]["test_acc"])
    assert "%" in fig.axes[1].get_ylabel()
    with pytest.raises(ValueError, match="nope"):
        viz.training_curves(histories, metrics=("nope",))
    with pytest.raises(TypeError, match="metrics"):
        viz.training_curves(histories, metrics=())
    with pytest.raises(ValueError, match="histories"):
        viz.training_curves({})


# --------------------------------------------------------------------------- method comparison


def test_method_comparison_means_and_kind_markers():
    results = _results()
    fig = viz.method_comparison(results, kinds=KINDS)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    summary = viz.method_summary(results, ["sec_per_epoch", "test_acc"], KINDS)
    assert summary["kind"].tolist() == ["baseline", "static", "DM loss", "dynamic"]
    lines = [c.lines[0] for c in ax.containers]
    assert [c.get_label() for c in ax.containers] == summary["method"].tolist()
    for line, row in zip(lines, summary.itertuples()):
        assert line.get_xdata()[0] == pytest.approx(row.sec_per_epoch)
        assert line.get_ydata()[0] == pytest.approx(row.test_acc)
        assert line.get_marker() == style.KIND_MARKERS[row.kind]
    ref = results[results.policy == "cutmix"]["test_acc"]
    assert summary.loc[2, "test_acc"] == pytest.approx(100 * ref.mean())
    assert summary.loc[2, "test_acc_std"] == pytest.approx(100 * ref.std())
    assert "clutter" in ax.get_title() and "3 runs" in ax.get_title()


def test_method_comparison_default_kinds_come_from_the_registry():
    pytest.importorskip("mixviz.mixing.registry")
    summary = viz.method_summary(_results(), ["test_acc"])
    assert summary["kind"].tolist() == ["baseline", "static", "DM loss", "dynamic"]


def test_method_bars_sorted_means_coloured_by_kind():
    results = _results()
    fig = viz.method_bars(results, metric="test_acc", kinds=KINDS)
    ax = fig.axes[0]
    bars = ax.patches
    widths = [p.get_width() for p in bars]
    assert widths == sorted(widths)
    summary = viz.method_summary(results, ["test_acc"], KINDS).sort_values("test_acc")
    np.testing.assert_allclose(widths, summary["test_acc"])
    assert [t.get_text() for t in ax.get_yticklabels()] == summary["method"].tolist()
    colors = [matplotlib.colors.to_hex(p.get_facecolor()) for p in bars]
    families = {"none+ce": "baseline", "mixup+mixup_ce": "static", "cutmix+dm": "static",
                "puzzlemix+mixup_ce": "dynamic"}
    assert colors == [style.FAMILY_TONES[families[m]][0] for m in summary["method"]]
    assert [p.get_hatch() for p in bars] == [style.DM_HATCH if m == "cutmix+dm" else None for m in summary["method"]]
    # lower is better for ECE: the lowest mean is drawn last (on top)
    ece = viz.method_bars(results.assign(ece=results["mixed_top2"] / 2), metric="ece", kinds=KINDS).axes[0]
    ece_widths = [p.get_width() for p in ece.patches]
    assert ece_widths == sorted(ece_widths, reverse=True)


def test_method_comparison_rejects_bad_input():
    results = _results()
    with pytest.raises(ValueError, match="nope"):
        viz.method_comparison(results, x="nope", kinds=KINDS)
    with pytest.raises(TypeError, match="results"):
        viz.method_comparison(results.to_dict(), kinds=KINDS)
    with pytest.raises(ValueError, match="kinds"):
        viz.method_comparison(results, kinds={"mixup": "fast"})
    with pytest.raises(ValueError, match="method"):
        viz.method_bars(results.drop(columns=["policy"]), kinds=KINDS)
    with pytest.raises(ValueError, match="results"):
        viz.method_bars(results.iloc[:0], kinds=KINDS)


# --------------------------------------------------------------------------- label mismatch


def test_mismatch_scatter_counts_the_shaded_corner():
    share = {"cutmix": np.array([0.5, 0.5, 0.2, 0.9]), "mixup": np.array([0.3, 0.7, 0.5, 0.5])}
    vis = {"cutmix": np.array([0.0, 0.5, 0.01, 0.04]), "mixup": np.array([0.3, 0.7, 0.5, np.nan])}
    fig = viz.mismatch_scatter(share, vis)
    assert len(fig.axes) == 2
    cut, mix = fig.axes
    assert "cutmix" in cut.get_title() and "50.0% of labels mismatched" in cut.get_title()
    assert "0.0% of labels mismatched" in mix.get_title()
    red = cut.collections[-1].get_offsets()
    np.testing.assert_allclose(np.asarray(red), [[0.0, 0.5], [0.04, 0.9]])
    assert len(mix.collections[-2].get_offsets()) == 3  # the NaN point is skipped


def test_mismatch_scatter_from_label_mismatch_reports():
    b = 8
    x = torch.rand(b, 1, 4, 4)
    y = torch.arange(b) % 3
    index = torch.arange(b).roll(1)
    obj = torch.zeros(b, 1, 4, 4)
    obj[:, :, :, :2] = 1.0  # every object sits in the left half
    mask = torch.ones(b, 1, 4, 4)
    mask[: b // 2, :, :, :2] = 0.0  # half the batch: the left half comes from the partner
    batch = MixedBatch(inputs=torch.lerp(x[index], x, mask), y_a=y, y_b=y[index], index=index,
                       lam=mask.mean((1, 2, 3)), mask=mask)
    report = metrics.label_mismatch(batch, obj)
    fig = viz.mismatch_scatter_from_reports({"cut": report})
    assert f"{report['rate']:.1%} of samples mismatched" in fig.axes[0].get_title()
    assert report["rate"] == 0.5
    with pytest.raises(ValueError, match="reports"):
        viz.mismatch_scatter_from_reports({"cut": {"rate": 0.1}})


def test_mismatch_scatter_rejects_bad_input():
    with pytest.raises(ValueError, match="visibility"):
        viz.mismatch_scatter({"a": np.zeros(3)}, {"b": np.zeros(3)})
    with pytest.raises(ValueError, match="same length"):
        viz.mismatch_scatter({"a": np.zeros(3)}, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match=r"label_share\['a'\]"):
        viz.mismatch_scatter({"a": np.full(3, 2.0)}, {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="share_threshold"):
        viz.mismatch_scatter({"a": np.zeros(3)}, {"a": np.zeros(3)}, share_threshold=1.5)
    with pytest.raises(TypeError, match=r"label_share\['a'\]"):
        viz.mismatch_scatter({"a": "xyz"}, {"a": np.zeros(3)})


# --------------------------------------------------------------------------- saliency grid


def test_saliency_grid_draws_images_and_normalised_maps():
    import torch.nn.functional as F

    x, _ = _images(b=4, size=6)
    mixed = torch.lerp(x[1], x[0], 0.6)
    g = torch.Generator().manual_seed(0)
    attr = {"mixup+mixup_ce": (torch.rand(4, 1, 6, 6, generator=g), torch.rand(4, 1, 6, 6, generator=g),
                               torch.tensor([[1, 2]] * 4)),
            "cutmix+dm": (torch.rand(6, 6, generator=g) * 3, torch.zeros(1, 6, 6))}
    names = ["cat", "dog", "cow"]
    fig = viz.saliency_grid((x[0], x[1]), mixed, attr, class_names=names, labels=(0, 1), lam=0.6,
                            agreement={"mixup+mixup_ce": (0.7, 0.25), "cutmix+dm": (0.5, 0.5)}, sample=2)
    assert len(fig.axes) == 2 * 5 + 1
    grid = np.array(fig.axes[:10]).reshape(2, 5)
    k = viz.display_scale(6)
    assert k == 22 and k * 6 >= 128  # a 6 px input is drawn at 22 x

    def nearest(image):  # [C, H, W] -> [kH, kW, C], each pixel a k x k square
        return image.repeat_interleave(k, 1).repeat_interleave(k, 2).permute(1, 2, 0).numpy()

    def bilinear(attr_map):  # [H, W] -> [kH, kW], as torch resamples it
        return F.interpolate(attr_map.double()[None, None], scale_factor=k, mode="bilinear",
                             align_corners=False)[0, 0].numpy()

    np.testing.assert_allclose(grid[0, 0].images[0].get_array(), nearest(x[0]), atol=1e-6)
    np.testing.assert_allclose(grid[1, 1].images[0].get_array(), nearest(x[1]), atol=1e-6)
    np.testing.assert_allclose(grid[0, 2].images[0].get_array(), nearest(mixed), atol=1e-6)
    first = attr["mixup+mixup_ce"][0][2, 0]
    np.testing.assert_allclose(grid[0, 3].images[1].get_array(), bilinear(first / first.max()), rtol=1e-5)
    second = attr["cutmix+dm"][0]
    np.testing.assert_allclose(grid[1, 3].images[1].get_array(), bilinear(second / second.max()), rtol=1e-5)
    np.testing.assert_allclose(grid[1, 4].images[1].get_array(), 0.0)  # an all-zero map stays zero
    grey_mixed = viz.grey(nearest(mixed))
    np.testing.assert_allclose(grid[0, 3].images[0].get_array(), grey_mixed, atol=1e-6)
    for ax in grid.ravel():  # drawn pixel for pixel: no further smoothing of the upsampled arrays
        assert all(im.get_interpolation() == "nearest" for im in ax.images)
    assert grid[0, 0].get_ylabel() == "mixup+mixup_ce:\ndog / cow"  # the method and its two classes
    assert grid[1, 0].get_ylabel() == "cutmix+dm:\ntop-1 / top-2"  # classes not given
    assert "dog" in grid[0, 3].get_title() and "cow" in grid[0, 4].get_title()
    assert "cat" in grid[0, 0].get_title() and "λ = 0.60" in grid[0, 2].get_title()
    assert "70%" in grid[0, 3].get_xlabel()
    assert "6 px input, shown at 22 x" in fig.get_suptitle()
    plt.close(fig)
    as_bytes = (x[0] * 255).round().to(torch.uint8)
    fig = viz.saliency_grid((as_bytes, as_bytes), as_bytes, {"m": attr["cutmix+dm"]}, scale=1)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), as_bytes.permute(1, 2, 0).numpy() / 255.0)
    np.testing.assert_allclose(fig.axes[3].images[1].get_array(), (second / second.max()).numpy(), rtol=1e-5)
    plt.close(fig)
    coarse = {"m": (torch.rand(3, 3, generator=g), torch.rand(3, 3, generator=g))}  # a map coarser than the image
    fig = viz.saliency_grid((x[0], x[1]), mixed, coarse, scale=4)
    assert fig.axes[3].images[1].get_array().shape == (24, 24)
    plt.close(fig)


def test_saliency_grid_rejects_bad_input():
    x, _ = _images(b=2, size=6)
    maps = (torch.rand(6, 6), torch.rand(6, 6))
    with pytest.raises(TypeError, match="images"):
        viz.saliency_grid(x[0], x[0], {"m": maps})
    with pytest.raises(TypeError, match=r"attributions\['m'\]"):
        viz.saliency_grid((x[0], x[1]), x[0], {"m": maps[0]})
    with pytest.raises(ValueError, match="non-negative"):
        viz.saliency_grid((x[0], x[1]), x[0], {"m": (-maps[0], maps[1])})
    with pytest.raises(ValueError, match="same shape"):
        viz.saliency_grid((x[0], x[1, :, :4]), x[0], {"m": maps})
    with pytest.raises(ValueError, match="sample"):
        viz.saliency_grid((x, x), x, {"m": maps}, sample=5)
    with pytest.raises(ValueError, match="agreement"):
        viz.saliency_grid((x[0], x[1]), x[0], {"m": maps}, agreement={"other": (0.1, 0.2)})
    with pytest.raises(ValueError, match="lam"):
        viz.saliency_grid((x[0], x[1]), x[0], {"m": maps}, lam=2.0)
    with pytest.raises(ValueError, match="scale"):
        viz.saliency_grid((x[0], x[1]), x[0], {"m": maps}, scale=0)


def test_single_runs_get_no_error_bars():
    """One run per method has no spread: neither plot draws an error bar, and
    the titles say so instead of promising a mean ± std."""
    results = _results()
    single = results.drop_duplicates(["policy", "loss"]).reset_index(drop=True)
    fig = viz.method_comparison(single, kinds=KINDS)
    ax = fig.axes[0]
    assert all(not c.has_xerr and not c.has_yerr for c in ax.containers)
    assert "1 run per method" in ax.get_title() and "±" not in ax.get_title()
    several = viz.method_comparison(results, kinds=KINDS).axes[0]
    assert all(c.has_xerr and c.has_yerr for c in several.containers)

    histories = {"mixup+mixup_ce": _history(seed=0)}
    bars = viz.mixed_accuracy_plot(histories, final=single).axes[2]
    assert not [c for c in bars.containers if type(c).__name__ == "ErrorbarContainer"]
    assert "1 run per method" in bars.get_title()
    bars = viz.mixed_accuracy_plot(histories, final=results).axes[2]
    assert len([c for c in bars.containers if type(c).__name__ == "ErrorbarContainer"]) == 2
    assert "mean ± 95 % interval over 3 seeds" in bars.get_title()


def test_midpoint_loss_has_its_own_mark():
    """average + mixup CE and average + midpoint share the policy colour, so the
    loss must tell them apart: the midpoint loss gets its own kind and marker."""
    results = pd.DataFrame({"policy": ["average", "average"], "loss": ["mixup_ce", "midpoint"],
                            "test_acc": [0.7, 0.6], "sec_per_epoch": [1.0, 1.1]})
    summary = viz.method_summary(results, ["sec_per_epoch", "test_acc"], {"average": "static"})
    assert summary["kind"].tolist() == ["static", "midpoint loss"]
    ax = viz.method_comparison(results, kinds={"average": "static"}).axes[0]
    markers = [c.lines[0].get_marker() for c in ax.containers]
    assert markers == [style.KIND_MARKERS["static"], style.KIND_MARKERS["midpoint loss"]]
    assert len(set(style.KIND_MARKERS.values())) == len(style.KIND_MARKERS)


def test_save_with_a_palette(tmp_path):
    from PIL import Image

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(np.linspace(0, 1, 400).reshape(20, 20), cmap="viridis")
    path = viz.save(fig, tmp_path / "sub" / "a.png", dpi=50, colors=256)
    with Image.open(path) as img:
        assert img.mode == "P" and len(img.getcolors(256)) <= 256
        w, h = img.size
    full = viz.save(fig, tmp_path / "b.png", dpi=50)
    with Image.open(full) as img:
        assert img.mode in ("RGB", "RGBA") and img.size == (w, h)   # same picture, fewer colours
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "b.png", "sub"]  # no temp files left
    with pytest.raises(ValueError, match="colors"):
        viz.save(fig, tmp_path / "c.pdf", colors=16)
    with pytest.raises(ValueError, match="colors"):
        viz.save(fig, tmp_path / "c.png", colors=1000)
    plt.close(fig)
