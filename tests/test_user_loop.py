"""A library in the user's own loop (issue 24): Manifold Mixup cannot train
silently on unmixed inputs, Mix keeps no trap, analyses take any model."""

from __future__ import annotations

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
