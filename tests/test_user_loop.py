"""A library in the user's own loop (issue 24): Manifold Mixup cannot train
silently on unmixed inputs, Mix keeps no trap, analyses take any model."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from mixviz import losses, mixing, models


def test_manifold_with_a_torchvision_resnet_and_dm_raises():
    net = torchvision.models.resnet18(num_classes=10)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    batch = mixing.mix("manifold", x, y, generator=torch.Generator().manual_seed(0))
    crit = losses.DecoupledMixupLoss()
    with pytest.raises(ValueError, match="mixing.forward"):
        crit(net(batch.inputs), batch)
    with pytest.raises(ValueError, match="hidden-layer access"):
        mixing.forward(net, batch)


@pytest.mark.parametrize("loss", ["mixup_ce", "dm", "ce"])
def test_every_loss_refuses_a_manifold_batch_not_run_through_forward(loss):
    net = models.build("smallcnn", 10, (3, 16, 16))
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 10, (4,))
    batch = mixing.mix("manifold", x, y, generator=torch.Generator().manual_seed(0))
    crit = losses.build(loss, 10)
    with pytest.raises(ValueError, match="inside the network"):
        crit(net(batch.inputs), batch)
    with pytest.raises(ValueError, match="inside the network"):
        crit(logits=net(batch.inputs), target=batch)
    assert torch.isfinite(crit(mixing.forward(net, batch), batch))
    assert not batch.to("cpu").forwarded  # a copy has not been through a model


def test_pixel_policies_need_no_forward():
    net = torchvision.models.resnet18(num_classes=10)
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 10, (2,))
    batch = mixing.mix("cutmix", x, y, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(losses.DecoupledMixupLoss()(net(batch.inputs), batch))


# --------------------------------------------------------------------------- analyses take any model


class _TupleNet(torch.nn.Module):
    """Returns (logits, features), like many research models."""

    def __init__(self, classes=4):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.last_conv = self.body[0]
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x):
        feat = self.body(x).mean((2, 3))
        return self.head(feat), feat


class _DictNet(_TupleNet):
    def forward(self, x):
        logits, feat = super().forward(x)
        return {"logits": logits, "features": feat}


@pytest.mark.parametrize("net, logits_fn", [(_TupleNet(), lambda out: out[0]),
                                            (_DictNet(), lambda out: out["logits"])])
def test_analyses_take_a_model_returning_a_tuple_or_a_dict(net, logits_fn):
    from mixviz import analysis, saliency

    torch.manual_seed(0)
    x, y = torch.rand(12, 3, 8, 8), torch.arange(12) % 4
    masks = (torch.rand(12, 1, 8, 8) > 0.5).float()
    with pytest.raises(TypeError, match="logits_fn"):
        analysis.calibration(net, x, y)
    bins, ece = analysis.calibration(net, x, y, logits_fn=logits_fn)
    assert set(ece) == {"model"}
    with warnings.catch_warnings():  # 12 samples of an untrained net: the temperature may hit a bound
        warnings.simplefilter("ignore", UserWarning)
        table = analysis.temperature_scaling(net, x, y, logits_fn=logits_fn)
    assert len(table) == 1
    assert set(analysis.mixed_accuracy(net, x, y, logits_fn=logits_fn).columns) >= {"mixed_top1", "mixed_top2"}
    assert len(analysis.mixed_accuracy(net, x, y, policy="saliencymix", logits_fn=logits_fn)) == 1
    assert len(analysis.memorisation(net, x, y, y, logits_fn=logits_fn)) == 1
    assert len(analysis.visible_pair_accuracy(net, x, y, masks, logits_fn=logits_fn)) == 1
    assert len(analysis.saliency_table(net, x, y, masks, logits_fn=logits_fn)) == len(analysis.SALIENCY_METHODS)
    example = analysis.saliency_example(net, x, y, masks, logits_fn=logits_fn, sample=0)
    assert example
    assert analysis.logits_of(net, x, logits_fn=logits_fn).shape == (12, 4)
    assert saliency.attribute(net, x[:2], y[:2], "gradcam", logits_fn=logits_fn).shape == (2, 1, 8, 8)
    assert len(saliency.top2_attributions(net, x[:2], logits_fn=logits_fn)) == 3
    assert set(saliency.saliency_agreement(net, x, masks, y, logits_fn=logits_fn)) == {"mask_share", "pointing"}
    mixed = analysis.fixed_mixed_batch("puzzlemix_lite", x, y, model=net, logits_fn=logits_fn, block_num=2)
    assert mixed.inputs.shape == x.shape


# --------------------------------------------------------------------------- no silent traps


def test_mix_does_not_drop_puzzlemix_aux_loss():
    net = models.build("smallcnn", 4, (3, 8, 8))
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixer = mixing.Mix("puzzlemix", num_classes=4, model=net, block_num=2, clean_lam=1.0)
    with pytest.raises(ValueError, match="return_aux=True"):
        mixer(x, y)
    images, targets, aux = mixing.Mix("puzzlemix", num_classes=4, model=net, block_num=2, clean_lam=1.0,
                                      return_aux=True)(x, y)
    assert aux.dim() == 0 and aux.requires_grad and targets.shape == (4, 4)
    images, targets, aux = mixing.Mix("cutmix", num_classes=4, return_aux=True)(x, y)
    assert float(aux) == 0.0
    assert len(mixing.Mix("puzzlemix", num_classes=4, model=net, block_num=2, clean_lam=0.0)(x, y)) == 2


def test_mix_needs_num_classes():
    with pytest.raises(TypeError, match="num_classes"):
        mixing.Mix("cutmix")
    with pytest.raises(TypeError, match="num_classes"):
        mixing.Mix("cutmix", num_classes=None)


def test_temperature_scaling_flags_a_clipped_temperature():
    from mixviz import analysis

    x, y = torch.randn(40, 3), torch.arange(40) % 3
    far = torch.nn.Linear(3, 3)
    with torch.no_grad():  # logits tiny and random: the best temperature is far below the range's floor
        far.weight.mul_(1e-4)
        far.bias.zero_()
    good = torch.nn.Linear(3, 3)
    with pytest.warns(UserWarning, match="far"):
        table = analysis.temperature_scaling({"far": far, "good": good}, x, y)
    assert "clipped" in table.columns
    assert bool(table.set_index("model").loc["far", "clipped"])


def test_mixed_batch_repr_is_one_short_line():
    x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    text = repr(mixing.mix("cutmix", x, y, generator=torch.Generator().manual_seed(0)))
    assert "\n" not in text and len(text) < 200, text
    assert "[64, 3, 32, 32] float32" in text and "lam in [" in text and "policy='cutmix'" in text


def test_subpackages_are_reachable_after_import_mixviz():
    import subprocess
    import sys

    code = ("import sys, mixviz; assert 'mixviz.mixing' not in sys.modules; "
            "mixviz.mixing.mix; mixviz.losses.build; print(set(dir(mixviz)) >= {'mixing', 'losses'})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import mixviz

        mixviz.nope
