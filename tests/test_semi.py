"""Semi-supervised training: the labelled subset, pseudo-labels, the batches,
the step (no label of an unlabelled image reaches it), exact resume."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mixviz import data, runs, semi
from mixviz.data.subsets import labelled_subset
from mixviz.semi import (
    PseudoLabelMonitor,
    SemiBatches,
    consistency_loss,
    labelled_dominant,
    pseudo_labels,
    ramp_up,
)
from mixviz.train import TrainConfig, fit

TINY = dict(dataset="clutter", model="smallcnn", epochs=2, batch_size=8, lr=0.05, seed=3, device="cpu",
            progress=False, dataset_options=dict(n_train=240, n_test=40, size=16, objects="shapes"),
            model_options=dict(width=4), labels_per_class=3, mu=2, semi="fixmatch", tau=0.3)
DM = dict(policy="mixup", loss="dm", loss_options=dict(eta=1.0, mode="both", lam_power=1.0))


def tiny(**kw):
    return TrainConfig(**{**TINY, **kw})


# --------------------------------------------------------------------------- the labelled subset


def test_subset_is_balanced_disjoint_and_covers_the_split():
    labels = torch.arange(10).repeat_interleave(torch.arange(5, 15))  # class c has 5 + c samples
    lab, unl = labelled_subset(labels, 4, seed=1)
    assert torch.equal(torch.bincount(labels[lab], minlength=10), torch.full((10,), 4))
    assert len(lab) == 40 and len(unl) == len(labels) - 40
    assert torch.equal(torch.sort(torch.cat((lab, unl))).values, torch.arange(len(labels)))
    assert torch.equal(lab, torch.sort(lab).values) and torch.equal(unl, torch.sort(unl).values)


def test_subset_is_drawn_by_the_seed_and_nested_in_k():
    labels = torch.arange(10).repeat(50)
    a, _ = labelled_subset(labels, 4, seed=0)
    assert torch.equal(a, labelled_subset(labels, 4, seed=0)[0])
    assert not torch.equal(a, labelled_subset(labels, 4, seed=1)[0])
    bigger, _ = labelled_subset(labels, 25, seed=0)
    assert set(a.tolist()) <= set(bigger.tolist())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=5, max_size=80), st.integers(1, 6), st.integers(0, 10_000))
def test_subset_property(values, k, seed):
    labels = torch.tensor(values)
    counts = torch.bincount(labels, minlength=5)
    if int(counts.min()) < k:
        with pytest.raises(ValueError, match="labels_per_class"):
            labelled_subset(labels, k, seed=seed, num_classes=5)
        return
    lab, unl = labelled_subset(labels, k, seed=seed, num_classes=5)
    assert torch.equal(torch.bincount(labels[lab], minlength=5), torch.full((5,), k))
    assert not set(lab.tolist()) & set(unl.tolist()) and len(lab) + len(unl) == len(labels)


def test_subset_larger_than_a_class_names_the_option_and_the_class():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    with pytest.raises(ValueError, match=r"labels_per_class \(3\).*'b'.*2 samples"):
        labelled_subset(labels, 3, classes=["a", "b", "c"])


# --------------------------------------------------------------------------- the objective


def test_threshold_mask_on_hand_made_logits():
    # softmax of [5, 0, 0] puts e^5 / (e^5 + 2) = 0.98670 on class 0; of [0, 2, 0] 0.78699 on class 1;
    # [0, 0, 100] is 1.0 on class 2 in float32; [1, 1, 1] is uniform.
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 100.0], [1.0, 1.0, 1.0]])
    label, mask, conf = pseudo_labels(logits, 0.95)
    assert label[:3].tolist() == [0, 1, 2]
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    torch.testing.assert_close(conf, torch.tensor([math.exp(5) / (math.exp(5) + 2), math.exp(2) / (math.exp(2) + 2),
                                                   1.0, 1 / 3]))
    assert pseudo_labels(logits, 0.78)[1].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert pseudo_labels(logits, 1.0)[1].tolist() == [0.0, 0.0, 1.0, 0.0]  # tau = 1: only certainty
    assert pseudo_labels(logits, 1 / 3)[1].tolist() == [1.0, 1.0, 1.0, 1.0]  # the confidence reaches tau
    assert not pseudo_labels(logits.requires_grad_(), 0.9)[2].requires_grad


def test_consistency_loss_averages_over_every_unlabelled_sample():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    label = torch.tensor([0, 0, 1])
    mask = torch.tensor([1.0, 0.0, 1.0])
    ce = F.cross_entropy(z, label, reduction="none")
    torch.testing.assert_close(consistency_loss(z, label, mask), (ce[0] + ce[2]) / 3)


def test_ramp_and_labelled_dominant_share():
    assert ramp_up(0, 100) == 0.0 and ramp_up(100, 100) == 1.0 and ramp_up(500, 100) == 1.0
    assert ramp_up(50, 100) == pytest.approx(0.5) and ramp_up(25, 100) == pytest.approx((1 - math.sqrt(0.5)) / 2)
    torch.testing.assert_close(labelled_dominant(torch.tensor([0.2, 0.5, 0.9])), torch.tensor([0.8, 0.5, 0.9]))


def test_monitor_counts_kept_and_right_pseudo_labels():
    m = PseudoLabelMonitor(torch.device("cpu"))
    m.update(torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0, 2, 2, 3]))
    m.update(torch.tensor([1, 1]), torch.tensor([1.0, 0.0]), torch.tensor([1, 0]))
    out = m.result()
    assert out == {"mask_rate": 3 / 6, "pseudo_acc": 2 / 3, "pseudo_acc_all": 4 / 6}
    m.update(torch.tensor([0]), torch.tensor([0.0]), torch.tensor([0]))
    assert math.isnan(m.result()["pseudo_acc"])  # nothing kept


# --------------------------------------------------------------------------- batches


def test_batches_hand_out_unlabelled_images_without_labels():
    labels = torch.arange(4).repeat(30)
    images = torch.arange(120, dtype=torch.float32).view(120, 1, 1, 1).expand(120, 1, 2, 2).contiguous()
    lab, unl = labelled_subset(labels, 5, seed=0)
    b = SemiBatches(images, labels, lab, unl, batch_size=6, mu=3, seed=0, device=torch.device("cpu"))
    assert len(b) == 100 // 18
    seen_l, seen_u = [], []
    for (x_l, x_u), y in b.epoch(0):
        assert x_l.shape[0] == 6 and x_u.shape[0] == 18 and y.shape == (6,)
        ids_l, ids_u = x_l[:, 0, 0, 0].long(), x_u[:, 0, 0, 0].long()
        assert torch.equal(labels[ids_l], y)
        assert torch.equal(b.current_truth, labels[ids_u])  # the measuring side only
        seen_l += ids_l.tolist()
        seen_u += ids_u.tolist()
    assert set(seen_l) <= set(lab.tolist()) and set(seen_u) <= set(unl.tolist())
    assert len(set(seen_u)) == len(seen_u)  # each unlabelled image at most once per epoch
    counts = torch.bincount(torch.tensor(seen_l), minlength=120)[lab]
    assert int(counts.max()) - int(counts.min()) <= 1  # the labelled subset cycles in permutations
    first = [x[0].clone() for x, _ in b.epoch(1)]
    again = [x[0] for x, _ in b.epoch(1)]
    assert all(torch.equal(a, c) for a, c in zip(first, again))  # a function of (seed, epoch)


def test_supervised_only_batches_keep_the_steps_of_the_semi_runs():
    labels = torch.arange(4).repeat(30)
    images = torch.rand(120, 1, 2, 2)
    lab, unl = labelled_subset(labels, 5, seed=0)
    semi_b = SemiBatches(images, labels, lab, unl, 6, 3, 0, torch.device("cpu"))
    sup_b = SemiBatches(images, labels, lab, unl, 6, 3, 0, torch.device("cpu"), use_unlabelled=False)
    assert len(sup_b) == len(semi_b)
    for ((a, _), ya), ((c, none), yc) in zip(semi_b.epoch(2), sup_b.epoch(2)):
        assert torch.equal(a, c) and torch.equal(ya, yc) and none is None


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("field,value,match", [
    ("tau", 0.0, "tau"), ("tau", 1.5, "tau"), ("tau", -0.1, "tau"), ("mu", 0, "mu"), ("mu", -2, "mu"),
    ("labels_per_class", 0, "labels_per_class"), ("semi", "mixmatch", "semi"), ("teacher", "moco", "teacher"),
    ("ema_momentum", 1.0, "ema_momentum"), ("lambda_u", -1.0, "lambda_u"),
    ("dataset", "moons", "training split"), ("dataset", "imagefolder", "training split"),
    ("policy", "cutmix", "policy"), ("loss", "midpoint", "loss"),
])
def test_bad_semi_config_names_the_option(field, value, match):
    with pytest.raises(ValueError, match=match):
        tiny(**{field: value})


def test_fixmatch_needs_labels_per_class_and_mixup_needs_a_mixed_loss():
    with pytest.raises(ValueError, match="labels_per_class"):
        tiny(labels_per_class=None)
    with pytest.raises(ValueError, match="loss"):
        tiny(policy="mixup", loss="ce")
    with pytest.raises(TypeError, match="mu"):
        tiny(mu=2.5)


def test_labels_per_class_larger_than_a_class_is_an_error_naming_it():
    with pytest.raises(ValueError, match="labels_per_class"):
        fit(tiny(labels_per_class=50))  # 24 images per class


def test_run_id_counts_semi_fields_only_on_the_semi_path():
    plain = TrainConfig(dataset="clutter")
    assert "mu" not in plain.identity() and "semi" not in plain.identity()
    assert runs.config_id(plain) == runs.config_id(replace(plain, mu=3, tau=0.5))  # unused: same run
    a = tiny()
    for field, value in (("mu", 3), ("tau", 0.5), ("labels_per_class", 4), ("teacher", "student"),
                         ("ema_momentum", 0.9), ("lambda_u", 2.0), ("semi", "none")):
        assert runs.config_id(a) != runs.config_id(replace(a, **{field: value})), field


# --------------------------------------------------------------------------- training


def _poisoned_load(monkeypatch, config):
    """data.load with garbage labels on the unlabelled images (the subset itself is drawn from the clean
    labels, as a real labelled subset is chosen before its other labels are thrown away)."""
    clean = data.load(config.dataset, "train", **config.dataset_options)
    lab, unl = labelled_subset(clean.labels, config.labels_per_class, seed=config.seed, num_classes=10)
    garbage = clean.labels.clone()
    g = torch.Generator().manual_seed(99)
    garbage[unl] = (garbage[unl] + torch.randint(1, 10, (len(unl),), generator=g)) % 10  # every one wrong
    real_load = data.load

    def load(name, split="train", **kw):
        ds = real_load(name, split, **kw)
        return replace(ds, labels=garbage.clone(), clean_labels=garbage.clone()) if split == "train" else ds

    monkeypatch.setattr(data, "load", load)
    monkeypatch.setattr("mixviz.semi.training.labelled_subset", lambda *a, **k: (lab, unl))


@pytest.mark.parametrize("teacher", ["ema", "student"])
def test_no_true_label_of_an_unlabelled_image_reaches_the_loss(monkeypatch, teacher):
    config = tiny(teacher=teacher, **DM)
    clean = fit(config)
    _poisoned_load(monkeypatch, config)
    poisoned = fit(config)
    for (name, a), (_, b) in zip(clean.model.state_dict().items(), poisoned.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(torch.tensor(clean.history["train_loss"].to_list()),
                       torch.tensor(poisoned.history["train_loss"].to_list()))
    # the measuring side did see the garbage: same pseudo-labels, other accuracy
    assert clean.history["mask_rate"].to_list() == poisoned.history["mask_rate"].to_list()
    assert clean.history["pseudo_acc_all"].to_list() != poisoned.history["pseudo_acc_all"].to_list()



@pytest.mark.parametrize("extra", [dict(teacher="ema", **DM), dict(semi="none", policy="mixup", loss="mixup_ce")])
def test_semi_run_resumes_to_the_unbroken_weights(tmp_path, extra, crashed_and_resumed):
    config = tiny(**extra)
    unbroken = fit(replace(config, out_dir=str(tmp_path / "a")))
    resumed = crashed_and_resumed(config, tmp_path / "b")
    for (name, a), (_, b) in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    columns = ["train_loss", "test_acc", *semi.HISTORY_COLUMNS]
    assert unbroken.history[columns].equals(resumed.history[columns])


def test_semi_run_records_its_measures_and_stores_them(runs_root):
    run = runs.load_or_train(tiny(**DM))
    h = run.history
    for column in ("test_acc", *semi.HISTORY_COLUMNS):
        assert column in h
    assert h["mask_rate"].between(0, 1).all() and h["pseudo_acc_all"].between(0, 1).all()
    assert h["unsup_weight"].tolist() == pytest.approx([0.5, 1.0])  # (1 - cos)/2 at the end of each epoch
    assert run.metrics["n_labelled"] == 30 and run.metrics["labels_per_class"] == 3
    again = runs.load_or_train(tiny(**DM))  # loaded from the store, not trained
    assert again.history["mask_rate"].tolist() == pytest.approx(h["mask_rate"].tolist())


def test_supervised_only_on_the_subset_trains_no_unlabelled_measures():
    run = fit(tiny(semi="none", epochs=1))
    assert run.history["mask_rate"].isna().all() and run.history["unsup_weight"].tolist() == [0.0]
    assert run.metrics["semi"] == "none" and run.metrics["n_unlabelled"] == 210


# --------------------------------------------------------------------------- command line


def test_cli_semi_options_are_explained_and_checked(capsys, runs_root):
    from mixviz.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for opt in ("--labels-per-class", "--semi", "--mu", "--tau", "--lambda-u", "--teacher", "--ema-momentum"):
        assert opt in out
    assert main(["train", "--semi", "fixmatch", "--labels-per-class", "4", "--tau", "1.5", "--no-progress"]) == 2
    assert "tau" in capsys.readouterr().err
    assert main(["train", "--semi", "fixmatch", "--labels-per-class", "4", "--mu", "0", "--no-progress"]) == 2
    assert "mu" in capsys.readouterr().err


def test_cli_trains_a_semi_run_into_the_store(capsys, runs_root):
    from mixviz.cli import main

    rc = main(["train", "--dataset", "clutter", "--dataset-option", "n_train=240", "--dataset-option", "n_test=40",
               "--dataset-option", "size=16", "--model-option", "width=4", "--epochs", "1", "--batch-size", "8",
               "--device", "cpu", "--no-progress", "--semi", "fixmatch", "--labels-per-class", "3", "--mu", "2",
               "--teacher", "student", "--policy", "mixup", "--loss", "dm"])
    assert rc == 0
    out = capsys.readouterr().out
    assert '"mask_rate"' in out and '"n_labelled": 30' in out
    (run,) = runs_root.iterdir()
    assert runs.load_run(run).config.teacher == "student"


# --------------------------------------------------------------------------- the comparison and its figure

import matplotlib  # noqa: E402
import pandas as pd  # noqa: E402

from mixviz.experiments import semi as sx  # noqa: E402

matplotlib.use("Agg")


def _results(dm_minus_mixup):
    """A synthetic results table: 2 label counts x 4 methods x 3 seeds."""
    rows = []
    for k in (4, 25):
        for s in range(3):
            base = 0.5 + 0.1 * s + (0.2 if k == 25 else 0.0)
            accs = {"supervised": base - 0.1, "fixmatch": base, "fixmatch+mixup": base + 0.01,
                    "fixmatch+dm": base + 0.01 + dm_minus_mixup[s]}
            for method, acc in accs.items():
                semi_run = method != "supervised"
                rows.append(dict(dataset="clutter", method=method, labels_per_class=k, seed=s, test_acc=acc,
                                 ece=0.1, nll=1.0, mask_rate=0.5 + 0.01 * s if semi_run else float("nan"),
                                 pseudo_acc=0.9 if semi_run else float("nan"),
                                 pseudo_acc_all=0.8 if semi_run else float("nan"), n_labelled=10 * k,
                                 sec_per_epoch=1.0 + s, epochs=3, run_id=f"r{k}{s}{method}"))
    return pd.DataFrame(rows, columns=sx.RESULT_COLUMNS)


def test_paired_difference_of_dm_and_mixup_with_its_interval():
    results = _results([0.01, 0.02, 0.03])
    paired = sx.paired_semi(results)
    row = paired[(paired["labels_per_class"] == 4) & (paired["treatment"] == "fixmatch+dm")
                 & (paired["reference"] == "fixmatch+mixup")].iloc[0]
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert row["test_acc"] == pytest.approx(0.02) and row["test_acc_ci"] == pytest.approx(half)
    assert row["seeds"] == 3
    text = sx.semi_markdown(sx.summarize_semi(results), paired)
    assert "no measurable difference" in text  # [-0.5, +4.5] points holds 0
    sure = sx.semi_markdown(sx.summarize_semi(_results([0.02, 0.021, 0.022])), sx.paired_semi(_results(
        [0.02, 0.021, 0.022])))
    assert "fixmatch+dm higher" in sure and "+2.1 ± 0.2 *" in sure
    summary = sx.summarize_semi(results)
    sup = summary[(summary["method"] == "supervised") & (summary["labels_per_class"] == 4)].iloc[0]
    assert sup["test_acc_mean"] == pytest.approx(0.5) and math.isnan(sup["mask_rate_mean"])


def test_grid_pairs_every_method_on_the_same_subset_and_seed():
    grid = sx.semi_grid("semi")
    p = sx.SEMI_PRESETS["semi"]
    assert len(grid) == len(p.methods) * len(p.labels_per_class) * len(p.seeds) == 24
    assert [c.seed for _, c in grid[:8]] == [0] * 8  # seed by seed
    configs = dict(grid[:4])
    assert configs["fixmatch+dm"].loss_options == sx.DM_SEMI and configs["fixmatch+mixup"].loss == "mixup_ce"
    loss_fields = ("loss", "loss_options", "revision")  # the DM loss's revision goes with the loss
    same = {k: v for k, v in configs["fixmatch+dm"].identity().items() if k not in loss_fields}
    assert same == {k: v for k, v in configs["fixmatch+mixup"].identity().items() if k not in loss_fields}
    assert configs["supervised"].semi == "none" and configs["supervised"].labels_per_class == 4
    with pytest.raises(ValueError, match="methods"):
        sx.semi_grid("semi", methods=("mixmatch",))
    with pytest.raises(ValueError, match="preset"):
        sx.semi_preset("semi-full")


def test_semi_curves_draws_a_band_per_method_over_seeds():
    rows = []
    for method in ("supervised", "fixmatch"):
        for s in range(3):
            for e in (1, 2, 3):
                kept = float("nan") if method == "supervised" else 0.1 * e + 0.01 * s
                rows.append(dict(method=method, seed=s, epoch=e, labels_per_class=4, test_acc=0.3 + 0.1 * e,
                                 mask_rate=kept, pseudo_acc=kept))
    fig = sx_viz_semi_curves(pd.DataFrame(rows))
    assert len(fig.axes) == 3
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert set(lines) == {"fixmatch"}  # supervised has no pseudo-labels to draw
    assert list(lines["fixmatch"].get_ydata()) == pytest.approx([11.0, 21.0, 31.0])  # mean over seeds, in %
    assert len(fig.axes[0].collections) == 1  # the interval band
    assert len(fig.axes[2].lines) == 2
    with pytest.raises(ValueError, match="histories"):
        sx_viz_semi_curves(pd.DataFrame(rows).drop(columns="mask_rate"))
    # two seeds with far-apart shares: the t interval (t = 12.7) reaches past 0 and 100 %; the band is clipped
    wide = pd.DataFrame([dict(method="fixmatch", seed=s, epoch=1, labels_per_class=4, test_acc=0.5,
                              mask_rate=0.5, pseudo_acc=v) for s, v in ((0, 0.05), (1, 0.95))])
    from mixviz import viz

    fig = viz.semi_curves(wide, colors={"fixmatch": "black"})
    ys = fig.axes[1].collections[0].get_paths()[0].vertices[:, 1]
    assert ys.min() == 0.0 and ys.max() == 100.0
    assert fig.axes[1].lines[0].get_color() == "black"
    with pytest.raises(ValueError, match="colors"):
        viz.semi_curves(wide, colors={"other": "black"})


def sx_viz_semi_curves(frame):
    from mixviz import viz

    return viz.semi_curves(frame, facet="labels_per_class")


def test_compare_semi_trains_the_grid_once_and_resumes(tmp_path, runs_root):
    p = sx.SemiPreset("tiny", "tiny", base={**TINY, "epochs": 1}, labels_per_class=(3,), seeds=(0, 1),
                      methods=("fixmatch", "fixmatch+dm"))
    logged = []
    results = sx.compare_semi(p, tmp_path / "out", log=logged.append)
    assert len(results) == 4 and len(logged) == 4
    for name in ("results.csv", "histories.csv", "summary.csv", "paired.csv", "summary.md", "semi_curves.png"):
        assert (tmp_path / "out" / name).exists(), name
    histories = pd.read_csv(tmp_path / "out" / "histories.csv")
    assert len(histories) == 4 and set(histories["method"]) == {"fixmatch", "fixmatch+dm"}
    with pytest.raises(ValueError, match="resume"):
        sx.compare_semi(p, tmp_path / "out")
    again = sx.compare_semi(p, tmp_path / "out", resume=True, log=logged.append)
    assert len(logged) == 4  # nothing trained again
    pd.testing.assert_frame_equal(again, results)
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| fixmatch+dm − fixmatch |" in text and "3 labels per class" in text
    paired = pd.read_csv(tmp_path / "out" / "paired.csv")
    assert paired[["treatment", "reference", "seeds"]].values.tolist() == [["fixmatch+dm", "fixmatch", 2]]


def test_augmentation_views_one_row_per_view():
    from mixviz import viz

    x = torch.rand(5, 3, 8, 8)
    fig = viz.augmentation_views({"image": x, "strong": 1 - x}, labels=torch.arange(5), class_names=list("abcde"),
                                 n=4)
    assert len(fig.axes) == 8
    assert fig.axes[0].get_title() == "a" and fig.axes[0].get_ylabel() == "image"
    assert fig.axes[4].get_ylabel() == "strong"
    with pytest.raises(ValueError, match="n must be"):
        viz.augmentation_views({"image": x}, n=6)


def test_compare_command_knows_the_semi_presets(capsys):
    from mixviz.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # help text is wrapped
    assert "semi-quick" in out and "4 and 25 labels per class" in out
    assert main(["compare", "--preset", "semi-quick", "--policies", "mixup"]) == 2
    assert "--policies" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_semi_trains_in_worker_processes(tmp_path, runs_root):
    p = sx.SemiPreset("tiny", "tiny", base={**TINY, "epochs": 1}, labels_per_class=(3,), seeds=(0, 1),
                      methods=("supervised", "fixmatch"))
    logged = []
    results = sx.compare_semi(p, tmp_path / "out", jobs=2, log=logged.append)
    assert len(results) == 4 and sum(line.startswith("trained") for line in logged) == 4
    assert len(list(runs_root.iterdir())) == 4
    with pytest.raises(ValueError, match="jobs"):
        sx.compare_semi(p, tmp_path / "other", jobs=0)
