"""The ``gpu-clutter`` preset: a GPU-scale comparison with nothing to download."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from mixviz import experiments
from mixviz.train import fit


def test_gpu_clutter_grid_builds():
    p = experiments.preset("gpu-clutter")
    assert p.regimes == ["clean", "noisy40"] and p.seeds == (0, 1, 2) and p.figure_regime == "noisy40"
    cells = experiments.cells(p)
    methods = {c.method for c in cells}
    assert {"none+ce", "mixup+mixup_ce", "mixup+dm", "cutmix+dm", "puzzlemix+dm", "average+midpoint"} <= methods
    assert len(cells) == 2 * 3 * len(methods)
    for c in cells:
        config = c.config
        assert (config.dataset, config.model, config.batch_size, config.epochs) == ("clutter", "preact_resnet18", 100,
                                                                                  100)
        assert (config.optimizer, config.lr, config.momentum, config.weight_decay, config.scheduler) == (
            "sgd", 0.1, 0.9, 1e-4, "cosine")
        options = config.dataset_options
        assert (options["n_train"], options["n_test"], options["size"], options["objects"]) == (50_000, 10_000, 32,
                                                                                              "both")
        noisy = c.regime == "noisy40"
        assert options.get("label_noise") == (0.4 if noisy else None)
        assert options.get("noise_kind") == ("symmetric" if noisy else None)
        if config.loss == "dm":
            assert config.alpha == 0.2  # the authors' DM runs
        else:
            assert config.alpha == experiments.CIFAR_ALPHA[config.policy]


def test_gpu_clutter_trains_one_epoch_on_cpu_at_reduced_size(tmp_path):
    """A smoke run of one cell (CutMix + DM on the noisy regime) with the data,
    network width and epochs cut down: the data options, model and recipe work."""
    cell = next(c for c in experiments.cells(experiments.preset("gpu-clutter"), seeds=(0,), regimes=("noisy40",))
                if c.method == "cutmix+dm")
    small = dict(cell.config.dataset_options, n_train=100, n_test=50)
    config = replace(cell.config, epochs=1, dataset_options=small, model_options=dict(width=8), device="cpu",
                     out_dir=str(tmp_path))
    run = fit(config)
    assert len(run.history) == 1 and math.isfinite(run.history["train_loss"].iloc[0])
    logits = run.model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 20)
    assert 0.0 <= run.metrics["test_acc"] <= 1.0 and (tmp_path / "metrics.json").exists()
