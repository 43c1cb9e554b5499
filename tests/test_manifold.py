"""Manifold Mixup: mixing at a hidden layer, the models' hidden-layer access, DM and the metrics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mixviz import losses, metrics, mixing, models, viz
from mixviz.mixing import MixedBatch, mix
from mixviz.models import HiddenMix
from mixviz.train import TrainConfig, fit

TINY = dict(dataset="clutter", model="smallcnn", epochs=2, batch_size=16, lr=0.05, seed=3, device="cpu",
            progress=False, dataset_options=dict(n_train=64, n_test=32, size=16), model_options=dict(width=8))


def _model(name: str, classes: int = 5, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "mlp":
        return models.build("mlp", classes, (6,), hidden=16)
    return models.build(name, classes, (3, 16, 16), width=4)


def _inputs(name: str, b: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (6,) if name == "mlp" else (3, 16, 16)
    return torch.rand(b, *shape, generator=g), torch.randint(0, 5, (b,), generator=g)


def _continue(model: nn.Module, name: str, h: torch.Tensor, layer: int) -> torch.Tensor:
    """The rest of the network from layer ``layer``, written out with its public modules."""
    net = model[1] if isinstance(model, nn.Sequential) else model
    if name == "mlp":
        return net.fc(net.features[2 * layer:](h))
    if name == "smallcnn":
        start = (0, 3, 6, 8)[layer]
        return net.fc(net.pool(net.features[start:](h)).flatten(1))
    if layer == 0:
        h = net.conv1(h)
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4)[layer:]:
        h = stage(h)
    return net.fc(F.adaptive_avg_pool2d(F.relu(net.bn(h)), 1).flatten(1))


# --------------------------------------------------------------------------- the models' hidden layers


@pytest.mark.parametrize("name", ["mlp", "smallcnn", "preact_resnet18"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_mixing_at_a_layer_is_run_up_to_k_mix_continue(name, layer):
    model = _model(name).eval()
    x, _ = _inputs(name)
    index = torch.tensor([2, 0, 1, 5, 3, 4])
    lam = torch.tensor([0.1, 0.5, 0.9, 0.3, 1.0, 0.0])
    h = model.hidden(x, layer)
    w = lam.view(-1, *([1] * (h.dim() - 1)))
    want = _continue(model, name, w * h + (1 - w) * h[index], layer)
    got = model(x, mix_hidden=HiddenMix(layer, (layer,), index, lam))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,layers", [("mlp", (0, 1, 2)), ("smallcnn", (0, 1, 2)), ("preact_resnet18", (2,))])
def test_layer_drawn_on_the_device_gives_exactly_the_mix_at_that_layer(name, layers):
    """The 0-dim tensor layer (no host sync) mixes where the int layer mixes: same output, same gradients."""
    x, _ = _inputs(name)
    index, lam = torch.tensor([5, 4, 3, 2, 1, 0]), torch.rand(6, generator=torch.Generator().manual_seed(1))
    for layer in layers:
        outs, grads = [], []
        for spec in (HiddenMix(layer, (layer,), index, lam),
                     HiddenMix(torch.tensor(layer), (0, 1, 2), index, lam)):
            model = _model(name).train()
            out = model(x, mix_hidden=spec)
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append([p.grad.clone() for p in model.parameters()])
        assert torch.equal(outs[0], outs[1]), layer
        for a, b in zip(*grads):
            assert torch.equal(a, b), layer


def test_plain_forward_is_unchanged_and_weight_one_leaves_the_batch_alone():
    model = _model("smallcnn").eval()
    x, _ = _inputs("smallcnn")
    net = model[1]
    want = net.fc(net.pool(net.features(model[0](x))).flatten(1))
    assert torch.equal(model(x), want)
    keep = HiddenMix(torch.tensor(2), (0, 1, 2, 3), torch.arange(6).flip(0), torch.ones(6))
    assert torch.equal(model(x, mix_hidden=keep), want)


def test_hidden_layer_shapes_and_stage_channels():
    model = models.build("preact_resnet18", 3, (3, 32, 32), width=4)
    x = torch.rand(2, 3, 32, 32)
    assert model.num_stages == 4 and model.stage_channels == (4, 8, 16, 32)
    assert [tuple(model.hidden(x, k).shape[1:]) for k in range(5)] == [
        (3, 32, 32), (4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4)]
    small = models.build("smallcnn", 3, (3, 32, 32), width=4)
    assert [tuple(small.hidden(x, k).shape[1:]) for k in range(4)] == [(3, 32, 32), (4, 16, 16), (8, 8, 8),
                                                                       (16, 8, 8)]
    with pytest.raises(ValueError, match="layer must be an int in \\[0, 3\\]"):
        small.hidden(x, 4)


def test_models_without_hidden_layers_say_so():
    resnet = models.build("resnet18", 3, (3, 32, 32))
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    batch = mix("manifold", x, y, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="mlp, smallcnn or preact_resnet18.*ResNet"):
        mixing.forward(resnet, batch)
    with pytest.raises(ValueError, match="Sequential"):
        mixing.forward(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)), batch)
    assert resnet(x).shape == (4, 3)  # the plain forward still works
    with pytest.raises(ValueError, match="hidden-layer access"):
        resnet.hidden(x, 1)


# --------------------------------------------------------------------------- the policy


@pytest.mark.parametrize("per_sample", [True, False])
@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 7), seed=st.integers(0, 2**16), alpha=st.floats(0.1, 4.0),
       layers=st.sampled_from([(0, 1, 2), (1,), (2, 3), (0, 3)]))
def test_invariants(per_sample, b, seed, alpha, layers):
    x, y = _inputs("smallcnn", b=b, seed=seed)
    out = mix("manifold", x, y, alpha=alpha, generator=torch.Generator().manual_seed(seed), per_sample=per_sample,
              layers=layers)
    assert out.policy == "manifold" and out.inputs is x and out.mask is None
    assert torch.equal(out.index.sort().values, torch.arange(b)) and torch.equal(out.y_b, y[out.index])
    assert out.lam.shape == (b,) and bool(((out.lam >= 0) & (out.lam <= 1)).all())
    assert out.layer.dim() == 0 and out.layer.dtype == torch.int64 and int(out.layer) in layers
    assert out.layers == layers
    if not per_sample:
        assert bool((out.lam == out.lam[0]).all())
    torch.testing.assert_close(out.soft_targets(5).sum(1), torch.ones(b))


def test_draw_order_and_uniform_layer():
    x, y = _inputs("smallcnn", b=8)
    out = mix("manifold", x, y, alpha=0.7, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    index = torch.randperm(8, generator=g)
    lam = mixing.sample_beta(0.7, 8, generator=g)
    pick = torch.randint(3, (), generator=g)
    assert torch.equal(out.index, index) and torch.equal(out.lam, lam) and int(out.layer) == int(pick)
    gen = torch.Generator().manual_seed(0)
    counts = np.bincount([int(mix("manifold", x, y, generator=gen).layer) for _ in range(600)], minlength=3)
    assert counts.sum() == 600 and (np.abs(counts - 200) < 4 * np.sqrt(600 * (1 / 3) * (2 / 3))).all()


@pytest.mark.parametrize("layers,error,match", [
    ((), TypeError, "layers"), ((0, -1), ValueError, "layers"), ((1, 1), ValueError, "layers"),
    ((0.5,), TypeError, "layers"), ((True,), TypeError, "layers"), ("012", TypeError, "layers"),
])
def test_bad_layers(layers, error, match):
    x, y = _inputs("smallcnn")
    with pytest.raises(error, match=match):
        mix("manifold", x, y, layers=layers)


def test_layers_beyond_the_network_and_the_torchvision_style_transform_are_refused():
    x, y = _inputs("smallcnn")
    batch = mix("manifold", x, y, layers=(2, 4))
    with pytest.raises(ValueError, match="layers must be <= 3"):
        mixing.forward(_model("smallcnn"), batch)
    with pytest.raises(ValueError, match="mixes inside the network"):
        mixing.Mix("manifold", num_classes=5)
    with pytest.raises(ValueError, match="layer"):
        MixedBatch(inputs=x, y_a=y, y_b=y, index=torch.arange(6), lam=torch.ones(6), layer=torch.tensor(1.0),
                   layers=(1,))
    with pytest.raises(ValueError, match="layers"):
        MixedBatch(inputs=x, y_a=y, y_b=y, index=torch.arange(6), lam=torch.ones(6), layers=(1,))


def test_forward_is_a_plain_call_for_pixel_batches():
    model = _model("smallcnn").eval()
    x, y = _inputs("smallcnn")
    batch = mix("cutmix", x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mixing.forward(model, batch), model(batch.inputs))


def test_distributed_data_parallel_passes_the_hidden_mix_through(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = _model("smallcnn").train()
        ddp = nn.parallel.DistributedDataParallel(model)
        x, y = _inputs("smallcnn")
        batch = mix("manifold", x, y, generator=torch.Generator().manual_seed(2), layers=(1,))
        got = mixing.forward(ddp, batch)
        got.sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        torch.testing.assert_close(got, mixing.forward(model, batch))
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- losses, metrics, figures


def test_dm_and_mixup_ce_take_the_hidden_batch_unchanged():
    model = _model("smallcnn").train()
    x, y = _inputs("smallcnn")
    batch = mix("manifold", x, y, generator=torch.Generator().manual_seed(4))
    logits = mixing.forward(model, batch)
    ce = losses.build("mixup_ce", num_classes=5)(logits, batch)
    want = -(batch.soft_targets(5) * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(ce, want)
    dm = losses.build("dm", num_classes=5, eta=0.1)(logits, batch)
    pixel = replace(batch, layer=None, layers=())  # the same labels and lam, without the hidden mixing
    torch.testing.assert_close(dm, losses.build("dm", num_classes=5, eta=0.1)(logits, pixel))
    dm.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_mixed_evaluation_mixes_inside_the_network():
    model = _model("smallcnn").eval()
    x, y = _inputs("smallcnn", b=20, seed=5)
    scores = metrics.mixed_evaluation(model, x, y, policy="manifold", alpha=1.0, seed=9, batch_size=8)
    gen = torch.Generator().manual_seed(9)
    logits, y_a, y_b = [], [], []
    with torch.no_grad():
        for start in range(0, 20, 8):
            b = mix("manifold", x[start:start + 8], y[start:start + 8], generator=gen)
            logits.append(mixing.forward(model, b))
            y_a.append(b.y_a)
            y_b.append(b.y_b)
    top1, top2 = metrics.mixed_topk_accuracy(torch.cat(logits), torch.cat(y_a), torch.cat(y_b))
    assert scores == {"mixed_top1": top1, "mixed_top2": top2}


def test_label_mismatch_treats_hidden_mixing_like_mixup():
    x, y = _inputs("smallcnn", b=8)
    batch = mix("manifold", x, y, generator=torch.Generator().manual_seed(1))
    objects = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    report = metrics.label_mismatch(batch, objects)
    pairs = (batch.y_a != batch.y_b).numpy()  # (a pair of one class counts its better visible object)
    assert pairs.any()
    np.testing.assert_allclose(report["visibility_a"][pairs], batch.lam.numpy()[pairs])
    np.testing.assert_allclose(report["visibility_b"][pairs], 1 - batch.lam.numpy()[pairs])
    assert report["n_samples"] == 8 and report["rate"] == 0.0


def test_gallery_says_the_mixing_is_inside_the_network():
    x, y = _inputs("smallcnn", b=6)
    deep = mix("manifold", x, y, generator=torch.Generator().manual_seed(0), layers=(2,))
    shallow = replace(deep, layer=torch.tensor(0), layers=(0,))
    fig = viz.mixed_samples_gallery({"manifold": deep, "input": shallow}, n=2)
    assert len(fig.axes) == 4  # no mask column and no colour bar
    grid = np.array(fig.axes).reshape(2, 2)
    for row in range(2):
        label = grid[row, 0].get_xlabel()
        assert "inside the network" in label and "hidden layer 2" in label and "no pixel mask" in label
        shown = grid[row, 0].images[0].get_array()
        a = x[row].permute(1, 2, 0).numpy()
        b = x[int(deep.index[row])].permute(1, 2, 0).numpy()
        assert shown.shape[1] > 2 * 16
        np.testing.assert_allclose(shown[:, :16], a, atol=1e-6)
        np.testing.assert_allclose(shown[:, -16:], b, atol=1e-6)
        lam = float(deep.lam[row])
        np.testing.assert_allclose(grid[row, 1].images[0].get_array(), lam * a + (1 - lam) * b, atol=1e-6)
        assert "mixed at the input (layer 0)" in grid[row, 1].get_xlabel()
    # a batch of the policy that lost its layer still says it is not a pixel mix
    lost = MixedBatch(inputs=x, y_a=y, y_b=deep.y_b, index=deep.index, lam=deep.lam, policy="manifold")
    fig = viz.mixed_samples_gallery({"manifold": lost}, n=1)
    assert "inside the network" in fig.axes[0].get_xlabel()


# --------------------------------------------------------------------------- training


def test_fit_with_dm_and_exact_resume(tmp_path, crashed_and_resumed):
    config = TrainConfig(**{**TINY, "policy": "manifold", "loss": "dm", "alpha": 2.0})
    unbroken = fit(replace(config, out_dir=str(tmp_path / "a")))
    assert np.isfinite(unbroken.history["train_loss"]).all()
    assert 0.0 <= unbroken.metrics["mixed_top1"] <= 1.0
    resumed = crashed_and_resumed(config, tmp_path / "b")
    for (name, a), (_, b) in zip(unbroken.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed.history["train_loss"].tolist() == unbroken.history["train_loss"].tolist()
