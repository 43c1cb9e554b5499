"""Tests of mixviz.analysis: the computations behind the notebooks and
``mixviz figures``, on tiny mixviz runs, on plain modules and on a torchvision
ResNet (any classifier returning logits)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from mixviz import analysis, data, metrics, mixing, saliency  # noqa: E402
from mixviz.mixing import MixedBatch  # noqa: E402
from mixviz.runs import load_or_train  # noqa: E402
from mixviz.train import TrainConfig  # noqa: E402

PACKAGE = Path(__file__).resolve().parent.parent / "mixviz"
CLUTTER = dict(n_train=128, n_test=64)
TINY = dict(model="smallcnn", epochs=1, batch_size=32, lr=0.05, dataset_options=CLUTTER, model_options=dict(width=4),
            progress=False)
TOY = dict(model="mlp", epochs=2, batch_size=50, lr=0.01, optimizer="adam", weight_decay=0.0,
           dataset_options=dict(n=100), model_options=dict(hidden=16, depth=2), progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A few one-epoch runs on 128 clutter images and two on moons, trained
    once into a module-wide store, and the clutter test split they were
    evaluated on."""
    root = tmp_path_factory.mktemp("runs")
    clutter = {f"{p}+{loss}": load_or_train(TrainConfig(dataset="clutter", policy=p, loss=loss, **TINY), root)
               for p, loss in (("none", "ce"), ("cutmix", "mixup_ce"), ("cutmix", "dm"), ("puzzlemix", "mixup_ce"))}
    toy = {f"{p}+{loss}": load_or_train(TrainConfig(dataset="moons", policy=p, loss=loss, **TOY), root)
           for p, loss in (("none", "ce"), ("mixup", "dm"))}
    return {"clutter": clutter, "toy": toy, "test": data.load("clutter", "test", **CLUTTER)}


@pytest.fixture(scope="module")
def resnet():
    """A torchvision ResNet-18 with random weights (nothing downloaded), as a
    user would bring from elsewhere: no ``last_conv``, no Normalize layer."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def _images(b=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.arange(b) % 3


# --------------------------------------------------------------------------- the package's shape


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_arrows_point_one_way():
    """cli -> figures/experiments -> analysis/train -> metrics/losses/...: no
    circle between experiments and figures, and analysis imports neither."""
    experiments = [PACKAGE / "experiments.py"] if (PACKAGE / "experiments.py").exists() else \
        sorted((PACKAGE / "experiments").glob("*.py"))
    assert experiments
    for path in experiments:
        assert not any(m.startswith("mixviz.figures") for m in _imports(path)), path.name
    for path in (PACKAGE / "analysis").glob("*.py"):
        upward = {m for m in _imports(path) if m.split(".")[:2] in (["mixviz", "figures"], ["mixviz", "experiments"],
                                                                     ["mixviz", "cli"], ["mixviz", "runs"])}
        assert not upward, (path.name, upward)


def test_modules_stay_small():
    """No module of the package grows past about 500 lines (split it by job when one does)."""
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 50 and max(sizes.values()) <= 520, {k: v for k, v in sizes.items() if v > 520}


# --------------------------------------------------------------------------- models in, names out


def test_named_models_accepts_modules_runs_dicts_and_lists(tiny):
    net = nn.Linear(2, 2)
    run = tiny["clutter"]["cutmix+dm"]
    [one] = analysis.named_models(net)
    assert one.name == "model" and one.module is net and one.info == {}
    [r] = analysis.named_models(run)
    assert r.name == "cutmix+dm" and r.module is run.model
    assert r.info == {"policy": "cutmix", "loss": "dm", "kind": "DM", "seed": 0}
    both = analysis.named_models({"mine": net, "theirs": run})
    assert [m.name for m in both] == ["mine", "theirs"] and both[1].info["kind"] == "DM"
    listed = analysis.named_models([run, net])
    assert [m.name for m in listed] == ["cutmix+dm", "model 1"]
    with pytest.raises(TypeError, match=r"models\['x'\] must be a torch.nn.Module"):
        analysis.named_models({"x": "not a model"})
    with pytest.raises(ValueError, match="models must not be empty"):
        analysis.named_models({})
    with pytest.raises(TypeError, match="models must be"):
        analysis.named_models([net], allow_list=False)
    with pytest.raises(TypeError, match="keys must be str"):
        analysis.named_models({1: net})


def test_training_kind_and_method_name():
    assert analysis.training_kind("none", "ce") == "baseline"
    assert analysis.training_kind("cutmix", "mixup_ce") == "static"
    assert analysis.training_kind("puzzlemix", "mixup_ce") == "dynamic"
    assert analysis.training_kind("puzzlemix", "dm") == "DM"
    with pytest.raises(ValueError, match="policy"):
        analysis.training_kind("nope", "ce")
    assert analysis.method_name(TrainConfig(dataset="moons", policy="mixup", loss="dm")) == "mixup+dm"
    with pytest.raises(TypeError, match="config"):
        analysis.method_name("mixup+dm")


# --------------------------------------------------------------------------- fixed mixed sets


def test_fixed_mixed_batch_same_seed_same_set():
    x, y = _images()
    a = analysis.fixed_mixed_batch("cutmix", x, y, seed=3)
    b = analysis.fixed_mixed_batch("cutmix", x, y, seed=3)
    c = analysis.fixed_mixed_batch("cutmix", x, y, seed=4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.lam, b.lam) and torch.equal(a.index, b.index)
    assert not torch.equal(a.inputs, c.inputs)
    # the same as mixing.mix with a generator of that seed
    ref = mixing.mix("cutmix", x, y, alpha=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, ref.inputs) and torch.equal(a.mask, ref.mask)
    with pytest.raises(ValueError, match="model"):
        analysis.fixed_mixed_batch("puzzlemix", x, y)


def test_mix_at_lam_mixup_is_exact_lerp():
    x, y = _images()
    m = analysis.mix_at_lam("mixup", x, y, 0.3, seed=1)
    torch.testing.assert_close(m.inputs, 0.3 * x + 0.7 * x[m.index])
    assert torch.equal(m.lam, torch.full((6,), 0.3))
    assert torch.equal(m.y_b, y[m.index])
    assert torch.equal(m.index, torch.randperm(6, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("policy", ["cutmix", "fmix", "gridmix", "smoothmix"])
def test_mix_at_lam_mask_policies(policy):
    x, y = _images(size=32)
    m = analysis.mix_at_lam(policy, x, y, 0.75)
    assert m.mask is not None and m.policy == policy
    torch.testing.assert_close(m.inputs, m.mask * x + (1 - m.mask) * x[m.index])
    torch.testing.assert_close(m.lam, m.mask.mean((1, 2, 3)))
    if policy == "fmix":  # exactly round(lam H W) pixels from a
        assert torch.equal(m.lam, torch.full((6,), round(0.75 * 1024) / 1024))
    if policy == "cutmix":  # a box of side sqrt(0.25) * 32 = 16 that fits inside the image: exactly 0.75
        assert torch.equal(m.lam, torch.full((6,), 0.75))


@pytest.mark.parametrize("size, tol", [(16, 0.03), (64, 0.01)])
@pytest.mark.parametrize("lam", [0.25, 0.5, 0.75])
def test_mix_at_lam_cutmix_shows_the_requested_share(size, tol, lam):
    """The fixed-lam CutMix of the pictures fits its box inside the image, so
    the share of a shown is the lam asked for (the training box is clipped at
    the border: at lam = 0.25 it showed 0.53-0.57 of a on 64 px images)."""
    x, y = _images(b=32, size=size)
    m = analysis.mix_at_lam("cutmix", x, y, lam)
    assert float((m.lam - lam).abs().max()) <= tol
    torch.testing.assert_close(m.lam, m.mask.mean((1, 2, 3)))
    box = m.mask[:, 0] == 0  # one rectangle from the partner, wholly inside
    rows, cols = box.any(2), box.any(1)
    assert torch.equal(box.sum((1, 2)), rows.sum(1) * cols.sum(1))
    assert len(set(m.lam.tolist())) == 1 and len({tuple(r.nonzero()[[0, -1], 0].tolist()) for r in rows}) > 1


def test_fitted_box_mask_extremes_and_the_training_box_unchanged():
    from mixviz.analysis.mixed import fitted_box_mask

    lam = torch.tensor([0.0, 1.0, 0.5])
    m = fitted_box_mask(lam, 16, 16, generator=torch.Generator().manual_seed(0))
    assert m.shape == (3, 1, 16, 16)
    assert float(m[0].sum()) == 0.0 and float(m[1].min()) == 1.0 and abs(float(m[2].mean()) - 0.5) <= 1 / 32
    # the training policy keeps the authors' clipped box: at lam = 0.25 it shows more of a on average
    train = mixing.box_mask(torch.full((256,), 0.25), 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(train.mean()) > 0.35


def test_mix_at_lam_fixed_policies_and_errors():
    x, y = _images()
    assert torch.equal(analysis.mix_at_lam("average", x, y, 0.9).lam, torch.full((6,), 0.5))
    assert torch.equal(analysis.mix_at_lam("none", x, y, 0.2).inputs, x)
    with pytest.raises(ValueError, match="policy"):
        analysis.mix_at_lam("resizemix", x, y, 0.5)
    with pytest.raises(ValueError, match="lam"):
        analysis.mix_at_lam("mixup", x, y, 1.5)


def test_gallery_batches_share_partners():
    x, y = _images(b=8, size=16)
    batches = analysis.gallery_batches(x, y, ["mixup", "cutmix", "fmix", "average"])
    first = batches["mixup"].index
    for b in batches.values():
        assert torch.equal(b.index, first) and torch.equal(b.y_a, y)


def _small_cnn(seed=0):
    from mixviz import models

    torch.manual_seed(seed)
    return models.build("smallcnn", 10, (3, 16, 16), width=4).eval()


def test_at_resolution_gradient_is_the_small_models_gradient_spread_over_blocks():
    net = _small_cnn()
    big = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    analysis.AtResolution(net, 16)(big)[:, 3].sum().backward()
    small = torch.nn.functional.avg_pool2d(big.detach(), 4).requires_grad_(True)
    net(small)[:, 3].sum().backward()
    spread = small.grad.repeat_interleave(4, 2).repeat_interleave(4, 3) / 16
    torch.testing.assert_close(big.grad, spread)
    assert not analysis.AtResolution(net, 16).training and analysis.AtResolution(net.train(), 16).training
    with pytest.raises(ValueError, match="size"):
        analysis.AtResolution(net, 16)(torch.rand(1, 3, 40, 40))
    with pytest.raises(TypeError, match="model"):
        analysis.AtResolution("net", 16)


def test_mask_block_grid():
    mask = torch.ones(2, 1, 64, 64)
    mask[0, :, :16, 16:32] = 0          # one block of the 4 x 4 grid
    assert analysis.mask_block_grid(mask) == 4
    mask[1, :, 60:, :4] = 0.5           # one block of the 16 x 16 grid
    assert analysis.mask_block_grid(mask) == 16
    mask[1, :, 63, 0] = 0.0             # a single pixel: no grid of the set
    assert analysis.mask_block_grid(mask) is None
    with pytest.raises(ValueError, match="choices"):
        analysis.mask_block_grid(mask, choices=())


def test_large_gallery_at_64_px():
    """The 64 px gallery: the same clutter scenes as the 16 px set, every shown lam the realised
    mask share, PuzzleMix once per block grid of its set with masks on that grid, the 16 px model
    seeing the images through AtResolution."""
    small = data.load("clutter", "test", n_test=32, size=16, objects="shapes")
    large = data.load("clutter", "test", n_test=32, size=64, objects="shapes")
    assert torch.equal(small.labels, large.labels) and large.images.shape[-1] >= 64
    x, y = large.images[:8], large.labels[:8]
    policies = ["mixup", "cutmix", "saliencymix", "puzzlemix"]
    batches = analysis.large_gallery_batches(x, y, policies, models={"puzzlemix": _small_cnn()}, model_size=16)
    blocks = [analysis.block_title("puzzlemix", n) for n in analysis.PUZZLEMIX_BLOCKS]
    assert list(batches) == ["mixup", "cutmix", "saliencymix", *blocks]
    assert analysis.PUZZLEMIX_BLOCKS == (2, 4, 8, 16)
    for key, b in batches.items():
        assert b.inputs.shape[-2:] == (64, 64) and torch.equal(b.index, batches["mixup"].index)
        if b.mask is not None:  # the lam a title shows is the share of a's pixels
            torch.testing.assert_close(b.lam, b.mask.mean((1, 2, 3)))
    for n in analysis.PUZZLEMIX_BLOCKS:
        mask = batches[analysis.block_title("puzzlemix", n)].mask
        side = 64 // n
        cells = mask.reshape(8, 1, n, side, n, side)
        assert bool((cells.amax((3, 5)) == cells.amin((3, 5))).all())  # constant on each of the n x n blocks
        assert set(mask.unique().tolist()) <= {0.0, 0.5, 1.0}
    drawn = analysis.large_gallery_batches(x, y, ["puzzlemix"], models={"puzzlemix": _small_cnn()}, model_size=16,
                                           blocks=None)
    assert analysis.mask_block_grid(drawn["puzzlemix"].mask) in analysis.PUZZLEMIX_BLOCKS
    groups = analysis.gallery_groups(batches, max_columns=3)
    assert {k: list(v) for k, v in groups.items()} == {"static": ["mixup", "cutmix"],
                                                       "dynamic": ["saliencymix", *blocks[:2]],
                                                       "dynamic 2": blocks[2:]}
    assert analysis.gallery_policies(["mixup", "automix", "puzzlemix"]) == (["mixup", "puzzlemix"], ["automix"])
    with pytest.raises(ValueError, match="learned state"):
        analysis.large_gallery_batches(x, y, ["automix"], models={"automix": _small_cnn()}, model_size=16)
    with pytest.raises(ValueError, match="model_size"):
        analysis.large_gallery_batches(x, y, ["mixup"], model_size=24)


def test_pick_mixed_sample():
    masks = torch.zeros(4, 1, 4, 4)
    masks[:, :, :2, :2] = 1                                  # every object in the top-left corner
    mask = torch.ones(4, 1, 4, 4)
    mask[1, :, :2, :2] = 0                                   # sample 1: object a cut away
    mask[2, :, :, 2:] = 0                                    # sample 2: half from b, b's object hidden
    mask[3, :, 2:, :] = 0
    mask[3, :, :1, :] = 0                                    # sample 3: a half visible, b half visible
    index = torch.tensor([0, 2, 3, 1])
    mixed = MixedBatch(inputs=torch.zeros(4, 1, 4, 4), y_a=torch.tensor([0, 1, 2, 3]),
                       y_b=torch.tensor([0, 2, 3, 1]), index=index, lam=mask.mean((1, 2, 3)), mask=mask)
    assert analysis.pick_mixed_sample(mixed, masks, min_visible=0.5, lam_range=(0.2, 0.8)) == 3
    # nothing qualifies at 0.9 visible: the pair whose worse object is most visible
    assert analysis.pick_mixed_sample(mixed, masks, min_visible=0.9) == 3
    vis_a, vis_b = analysis.visible_objects(mixed, masks)
    torch.testing.assert_close(vis_a, mask * masks)
    torch.testing.assert_close(vis_b, (1 - mask) * masks[index])


# --------------------------------------------------------------------------- calibration and mixed accuracy


def test_calibration_matches_the_run_metrics(tiny):
    test = tiny["test"]
    bins, ece = analysis.calibration(tiny["clutter"], test.images, test.labels, n_bins=15)
    for name, run in tiny["clutter"].items():
        assert ece[name] == pytest.approx(run.metrics["ece"], abs=1e-6)   # same data, same formula
        b = bins[name]
        assert int(b["count"].sum()) == len(test.labels)
        full = b[b["count"] > 0]
        from_bins = float((full["count"] / len(test.labels) * (full["accuracy"] - full["confidence"]).abs()).sum())
        assert from_bins == pytest.approx(ece[name], abs=1e-5)


def test_calibration_of_a_torchvision_model(tiny, resnet):
    test = tiny["test"]
    bins, ece = analysis.calibration({"resnet18": resnet, "run": tiny["clutter"]["none+ce"]}, test.images,
                                     test.labels)
    with torch.no_grad():
        probs = resnet(test.images).softmax(1)
    assert ece["resnet18"] == pytest.approx(metrics.expected_calibration_error(probs, test.labels), abs=1e-6)
    pd.testing.assert_frame_equal(bins["resnet18"], metrics.reliability_bins(probs, test.labels))
    assert resnet.training is False
    resnet.train()
    analysis.calibration(resnet, test.images[:8], test.labels[:8])
    assert resnet.training is True    # the mode is restored
    resnet.eval()
    with pytest.raises(ValueError, match="labels must have length"):
        analysis.calibration(resnet, test.images, test.labels[:3])


def test_mixed_accuracy_fixed_set(tiny):
    test = tiny["test"]
    runs = tiny["clutter"]
    table = analysis.mixed_accuracy(runs, test.images, test.labels)
    assert list(table["method"]) == list(runs)
    for row in table.itertuples():
        run = runs[row.method]
        # the training loop evaluated on cutmix with seed = config.seed = 0: the same fixed set
        assert row.mixed_top1 == pytest.approx(run.metrics["mixed_top1"], abs=1e-6)
        assert row.mixed_top2 == pytest.approx(run.metrics["mixed_top2"], abs=1e-6)
    row = table.set_index("method").loc["cutmix+dm"]
    assert row["kind"] == "DM" and row["policy"] == "cutmix" and row["seed"] == 0
    # a list of Runs: one row each, named by method
    listed = analysis.mixed_accuracy(list(runs.values()), test.images, test.labels)
    assert list(listed["method"]) == list(runs)


def test_mixed_accuracy_of_a_torchvision_model(tiny, resnet):
    test = tiny["test"]
    table = analysis.mixed_accuracy({"resnet18": resnet}, test.images, test.labels)
    assert list(table.columns) == ["method", "mixed_top1", "mixed_top2"]
    # reference: mix once, score the model on the mixed images
    mixed = analysis.fixed_mixed_batch("cutmix", test.images, test.labels)
    with torch.no_grad():
        logits = resnet(mixed.inputs)
    top1, top2 = metrics.mixed_topk_accuracy(logits, mixed.y_a, mixed.y_b)
    assert table.loc[0, "mixed_top1"] == pytest.approx(top1) and table.loc[0, "mixed_top2"] == pytest.approx(top2)


def test_mismatch_reports(tiny):
    test = tiny["test"]
    models = analysis.dynamic_models(tiny["clutter"], ["cutmix", "puzzlemix"])
    assert list(models) == ["puzzlemix"]
    assert models["puzzlemix"] is tiny["clutter"]["puzzlemix+mixup_ce"].model
    reports = analysis.mismatch_reports(test.images, test.labels, test.masks, ["mixup", "cutmix", "puzzlemix"],
                                        models=models)
    # mixup fades, never cuts: an object is as visible as its share, so never mismatched
    assert reports["mixup"]["rate"] == 0.0
    ref = metrics.label_mismatch(analysis.fixed_mixed_batch("cutmix", test.images, test.labels), test.masks)
    assert reports["cutmix"]["rate"] == ref["rate"] and reports["cutmix"]["n_samples"] == 64
    np.testing.assert_array_equal(reports["cutmix"]["visibility_a"], ref["visibility_a"])
    with pytest.raises(ValueError, match="model"):
        analysis.mismatch_reports(test.images, test.labels, test.masks, ["puzzlemix"])
    # a plain module can guide a dynamic policy too
    plain = analysis.dynamic_models({"none+ce": tiny["clutter"]["none+ce"].model}, ["puzzlemix_lite"])
    assert plain["puzzlemix_lite"] is tiny["clutter"]["none+ce"].model
    # SaliencyMix's default saliency (the authors' model-free image saliency) asks no model
    assert analysis.dynamic_models({"none+ce": tiny["clutter"]["none+ce"].model}, ["saliencymix"]) == {}
    with pytest.raises(ValueError, match="dynamic"):
        analysis.dynamic_models({"mine": nn.Linear(2, 2)}, ["puzzlemix"])


# --------------------------------------------------------------------------- saliency


def test_saliency_table(tiny):
    test = tiny["test"]
    runs = {k: tiny["clutter"][k] for k in ("none+ce", "cutmix+dm")}
    table = analysis.saliency_table(runs, test.images, test.labels, test.masks, limit=32)
    assert list(table["method"]) == ["none+ce", "none+ce", "cutmix+dm", "cutmix+dm"]
    assert list(table["attribution"]) == ["gradcam", "saliency"] * 2
    for col in ("mask_share", "pointing", "mixed_share"):
        assert table[col].between(0, 1).all()
    assert table["chance"].iloc[0] == pytest.approx(float(test.masks[:32].mean()))
    ref = saliency.saliency_agreement(runs["cutmix+dm"].model, test.images[:32], test.masks[:32],
                                      test.labels[:32], method="saliency")
    row = table[(table["method"] == "cutmix+dm") & (table["attribution"] == "saliency")].iloc[0]
    assert row["mask_share"] == pytest.approx(ref["mask_share"]) and row["pointing"] == pytest.approx(ref["pointing"])
    assert list(table["kind"]) == ["baseline", "baseline", "DM", "DM"]


def test_saliency_table_of_a_torchvision_model(tiny, resnet):
    test = tiny["test"]
    with pytest.raises(ValueError, match="with_last_conv"):
        analysis.saliency_table({"resnet18": resnet}, test.images, test.labels, test.masks, limit=8)
    wrapped = analysis.with_last_conv(resnet, "layer3")
    assert wrapped.last_conv is resnet.layer3 and wrapped.training is resnet.training is False
    x = test.images[:8]
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), resnet(x))
    table = analysis.saliency_table({"resnet18": wrapped}, test.images, test.labels, test.masks, limit=16)
    assert list(table["attribution"]) == ["gradcam", "saliency"] and "kind" not in table.columns
    ref = saliency.saliency_agreement(resnet, test.images[:16], test.masks[:16], test.labels[:16], method="saliency")
    row = table.iloc[1]
    assert row["mask_share"] == pytest.approx(ref["mask_share"]) and row["pointing"] == pytest.approx(ref["pointing"])
    # the Grad-CAM map is the one of layer3 (8 x 8 on 32-pixel images), upsampled
    cam = saliency.attribute(wrapped, x, test.labels[:8], "gradcam")
    assert cam.shape == (8, 1, 32, 32)
    assert resnet.training is False  # the analyses leave the model in the mode they found it
    with pytest.raises(ValueError, match="layer"):
        analysis.with_last_conv(resnet, "layer9")
    with pytest.raises(ValueError, match="submodule"):
        analysis.with_last_conv(resnet, nn.Conv2d(1, 1, 1))


def test_saliency_by_kind():
    table = pd.DataFrame({"method": ["a", "b", "c", "d", "mine"], "kind": ["static", "DM", "static", "baseline", None],
                          "attribution": ["gradcam"] * 5, "mask_share": [0.2, 0.5, 0.4, 0.1, 0.9],
                          "pointing": [0.0, 1.0, 1.0, 0.5, 0.9], "mixed_share": [0.1, 0.3, 0.3, 0.2, 0.9]})
    out = analysis.saliency_by_kind(table)
    assert list(out["kind"]) == ["baseline", "static", "DM"]   # rows without a kind are left out
    static = out.set_index("kind").loc["static"]
    assert static["mask_share"] == pytest.approx(0.3) and static["pointing"] == pytest.approx(0.5)
    assert static["methods"] == 2
    with pytest.raises(ValueError, match="mixed_share"):
        analysis.saliency_by_kind(table.drop(columns="mixed_share"))


def test_saliency_example_feeds_the_grid(tiny, resnet):
    from mixviz import viz

    test = tiny["test"]
    models = {"none+ce": tiny["clutter"]["none+ce"], "resnet18": analysis.with_last_conv(resnet, "layer3")}
    ex = analysis.saliency_example(models, test.images, test.labels, test.masks, class_names=test.classes)
    mixed = analysis.fixed_mixed_batch("cutmix", test.images, test.labels)
    i = analysis.pick_mixed_sample(mixed, test.masks)
    assert torch.equal(ex["mixed"], mixed.inputs[i])
    assert ex["labels"] == (int(mixed.y_a[i]), int(mixed.y_b[i])) and ex["lam"] == pytest.approx(float(mixed.lam[i]))
    assert torch.equal(ex["images"][1], test.images[int(mixed.index[i])])
    for name, (first, second, top2) in ex["attributions"].items():
        assert first.shape == second.shape == (1, 1, 32, 32) and top2.shape == (1, 2)
        assert all(0.0 <= v <= 1.0 for v in ex["agreement"][name])
    fig = viz.saliency_grid(**ex)
    assert len(fig.axes) == 2 * 5 + 1
    for row, (name, (_, _, top2)) in enumerate(ex["attributions"].items()):  # row title: method and its classes
        first, second = (f'"{test.classes[int(c)]}"' for c in top2[0])  # digit names are quoted
        assert fig.axes[5 * row].get_ylabel() == f"{name}:\n{first} / {second}"
    assert "32 px input, shown at 4 x" in fig.get_suptitle()


# --------------------------------------------------------------------------- decision boundaries


def test_boundaries_and_notes(tiny):
    runs = tiny["toy"]
    points = data.load("moons", "test", n=100)
    grids = analysis.boundary_grids(runs, points.images, resolution=20)
    assert set(grids) == set(runs)
    for g in grids.values():
        assert g["probs"].shape == (20, 20, 2)
        np.testing.assert_allclose(g["probs"].sum(-1), 1.0, atol=1e-5)
    notes = analysis.boundary_notes(runs, points.images, points.labels)
    assert "DM term = 0" in notes["mixup+dm"] and "DM" not in notes["none+ce"]
    # the run was evaluated on the same test points: the same accuracy
    assert f"test acc {100 * runs['none+ce'].metrics['test_acc']:.1f} %" in notes["none+ce"]
    # a plain module on 2-D points
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    three = analysis.boundary_notes({"mine": net}, points.images, points.labels)
    with torch.no_grad():
        acc = float(net(points.images).argmax(1).eq(points.labels).float().mean())
    assert three["mine"].startswith(f"test acc {100 * acc:.1f} %") and "DM" not in three["mine"]
    assert analysis.boundary_grids(net, points.images, resolution=5)["model"]["probs"].shape == (5, 5, 3)


# --------------------------------------------------------------------------- noisy labels and visible pairs


def test_memorisation_of_any_model(resnet):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 32, 32, generator=g)
    clean = torch.arange(40) % 10
    noisy = clean.clone()
    noisy[:10] = (clean[:10] + 1) % 10                          # a quarter flipped
    table = analysis.memorisation({"resnet18": resnet}, x, noisy, clean)
    with torch.no_grad():
        ref = metrics.memorisation(resnet(x), noisy, clean)
    row = table.iloc[0]
    assert row["method"] == "resnet18" and row["noisy_share"] == pytest.approx(0.25)
    for key in ("memorised", "still_right", "clean_fit"):
        assert row[key] == pytest.approx(ref[key])
    # a model that predicts the noisy labels exactly has memorised all of them
    cheat = nn.Module()
    cheat.forward = lambda inputs: torch.nn.functional.one_hot(noisy, 10).float() * 10
    exact = analysis.memorisation(cheat, x, noisy, clean).iloc[0]
    assert (exact["memorised"], exact["still_right"], exact["clean_fit"]) == (1.0, 0.0, 1.0)


def test_visible_pair_accuracy(tiny, resnet):
    test = tiny["test"]
    models = {"resnet18": resnet, "cutmix+dm": tiny["clutter"]["cutmix+dm"]}
    table = analysis.visible_pair_accuracy(models, test.images, test.labels, test.masks)
    assert list(table["method"]) == ["resnet18", "cutmix+dm"] and table.loc[1, "kind"] == "DM"
    mixed = analysis.fixed_mixed_batch("cutmix", test.images, test.labels)
    with torch.no_grad():
        ref = metrics.mixed_topk_by_visibility(resnet(mixed.inputs), mixed, test.masks)
    row = table.iloc[0]
    for key, value in ref.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(row[key])
        else:
            assert row[key] == pytest.approx(value)
    assert row["n_both"] + row["n_one"] <= int((mixed.y_a != mixed.y_b).sum())
    assert row["n_both"] > 0 and row["n_one"] > 0  # CutMix hides one object of some pairs, not of others


def test_mixable_policies_leave_out_a_learned_policy_without_its_run():
    from mixviz import mixing

    net = nn.Linear(2, 2)
    every = [p for p in mixing.available() if p != "none"]
    learned = [p for p in every if mixing.policy_info(p).state is not None]
    assert learned == ["automix"]
    assert analysis.mixable_policies({"none+ce": net}) == [p for p in every if p not in learned]
    assert analysis.mixable_policies({"automix+mixup_ce": net}) == every
    assert analysis.mixable_policies({}, ["cutmix", "automix"]) == ["cutmix"]
    with pytest.raises(TypeError, match="policies must be a sequence"):
        analysis.mixable_policies({}, "cutmix")
    with pytest.raises(TypeError, match="models must be a dict"):
        analysis.mixable_policies([net])


class Scaled(torch.nn.Module):
    """Returns its inputs (logits) times a factor: a model whose confidence is known."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = torch.nn.Parameter(torch.tensor(factor), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_temperature_scaling_undoes_a_known_over_and_under_confidence():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6000, 10, generator=g) * 2
    y = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)  # calibrated logits z
    models = {"over": Scaled(3.0), "under": Scaled(0.3), "right": Scaled(1.0)}
    table = analysis.temperature_scaling(models, z, y).set_index("model")
    assert list(table.columns) == ["temperature", "clipped", "accuracy", "ece", "ece_scaled", "nll", "nll_scaled"]
    assert not table["clipped"].any()  # optima inside the range (tests/test_user_loop.py: one outside it)
    for name, factor in (("over", 3.0), ("under", 0.3), ("right", 1.0)):
        row = table.loc[name]
        assert row.temperature == pytest.approx(factor, rel=0.08)
        assert row.ece_scaled < 0.03 and row.nll_scaled <= row.nll + 1e-3
        assert row.accuracy == pytest.approx(metrics.accuracy(z, y, topk=1)[0])
    assert table.loc["over", "ece"] > 0.1 and table.loc["under", "ece"] > 0.1
    # cross-fitted: every sample scaled by a temperature fitted on the other folds, so folds and seed matter a little
    again = analysis.temperature_scaling(models["over"], z, y, folds=5, seed=3)
    assert again.loc[0, "temperature"] == pytest.approx(3.0, rel=0.08)
    with pytest.raises(ValueError, match="folds"):
        analysis.temperature_scaling(models["over"], z[:3], y[:3], folds=4)


def test_temperature_scaling_of_trained_runs(tiny):
    test = tiny["test"]
    table = analysis.temperature_scaling(tiny["clutter"], test.images, test.labels)
    assert list(table["model"]) == list(tiny["clutter"])
    for row in table.itertuples():
        run = tiny["clutter"][row.model]
        assert row.ece == pytest.approx(run.metrics["ece"], abs=1e-6) and row.nll == pytest.approx(run.metrics["nll"],
                                                                                                  abs=1e-5)
        assert 0 < row.temperature and 0 <= row.ece_scaled <= 1
    # the reliability bins after scaling (the slides' calibration page) come from the same cross-fitted predictions
    bins, ece = analysis.scaled_calibration(tiny["clutter"], test.images, test.labels)
    assert list(ece) == list(table["model"])
    assert [ece[m] for m in ece] == pytest.approx(table["ece_scaled"].tolist(), abs=1e-9)
    assert all(int(b["count"].sum()) == len(test.labels) for b in bins.values())
