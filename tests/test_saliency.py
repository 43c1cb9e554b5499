"""Tests of mixviz.saliency: models whose attributions are known in closed form,
hand-made maps and masks, shapes and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mixviz import saliency
from mixviz.models import build

H = W = 6
REGION = (slice(2, 5), slice(1, 4))  # rows 2..4, cols 1..3: the only pixels the linear model looks at


def _region_mask(batch: int) -> torch.Tensor:
    mask = torch.zeros(batch, 1, H, W)
    mask[:, :, REGION[0], REGION[1]] = 1
    return mask


def _linear_model(num_classes: int = 3, seed: int = 0) -> nn.Sequential:
    """logits = W vec(x) + b with W non-zero only inside REGION (both channels)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(num_classes, 2, H, W, generator=g)
    weight *= _region_mask(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * H * W, num_classes))
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten(1))
        model[1].bias.copy_(torch.randn(num_classes, generator=g))
    return model


class _CamModel(nn.Module):
    """A 1x1 conv (``last_conv``), global average pooling and a linear head:
    Grad-CAM for class t is relu(sum_k V[t, k] / (H W) * A_k) in closed form."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(2, 4, 1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    @property
    def last_conv(self) -> nn.Module:
        return self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def _images(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 2, H, W, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- attribute: known answers


def test_saliency_of_linear_model_is_abs_weight_max_over_channels():
    model = _linear_model()
    x = _images()
    target = torch.tensor([0, 2, 1])
    attr = saliency.attribute(model, x, target, method="saliency")
    weight = model[1].weight.detach().view(3, 2, H, W)
    want = weight[target].abs().amax(dim=1, keepdim=True)
    assert attr.shape == (3, 1, H, W)
    torch.testing.assert_close(attr, want)
    outside = 1 - _region_mask(3)
    assert float((attr * outside).abs().max()) == 0.0


def test_integrated_gradients_of_linear_model_is_input_times_weight():
    model = _linear_model()
    x = _images()
    attr = saliency.attribute(model, x, 1, method="integrated_gradients", n_steps=8)
    weight = model[1].weight.detach().view(3, 2, H, W)[1]
    want = (x * weight).abs().sum(dim=1, keepdim=True)
    torch.testing.assert_close(attr, want, rtol=1e-4, atol=1e-6)
    assert float((attr * (1 - _region_mask(3))).abs().max()) == 0.0


def test_gradcam_closed_form():
    model = _CamModel()
    x = _images()
    target = torch.tensor([0, 1, 2])
    attr = saliency.attribute(model, x, target, method="gradcam")
    with torch.no_grad():
        feats = model.conv(x)                                  # [B, 4, H, W]
        alpha = model.fc.weight[target] / (H * W)              # [B, 4]
        want = torch.relu((alpha[:, :, None, None] * feats).sum(1, keepdim=True))
    torch.testing.assert_close(attr, want, rtol=1e-5, atol=1e-7)


def test_gradcam_on_smallcnn_is_upsampled_and_non_negative():
    model = build("smallcnn", 10, (3, 32, 32), width=4).train()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    attr = saliency.attribute(model, x, torch.tensor([3, 7]), method="gradcam")
    assert attr.shape == (2, 1, 32, 32)
    assert float(attr.min()) >= 0.0
    assert not attr.requires_grad
    assert model.training  # mode restored
    # eval mode inside: the same call gives the same map (BatchNorm uses running statistics)
    torch.testing.assert_close(saliency.attribute(model, x, torch.tensor([3, 7]), method="gradcam"), attr)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_uint8_images_are_scaled(method):
    model = _linear_model()
    x = (_images() * 255).round()
    kw = {"n_steps": 4} if method == "integrated_gradients" else {}
    from_uint8 = saliency.attribute(model, x.to(torch.uint8), 0, method=method, **kw)
    from_float = saliency.attribute(model, x / 255, 0, method=method, **kw)
    torch.testing.assert_close(from_uint8, from_float)


def test_top2_attributions_explain_the_two_largest_logits():
    model = _linear_model(num_classes=4)
    x = _images(5)
    first, second, top2 = saliency.top2_attributions(model, x, method="saliency")
    with torch.no_grad():
        want = model(x).topk(2, dim=1).indices
    assert torch.equal(top2, want)
    torch.testing.assert_close(first, saliency.attribute(model, x, want[:, 0], method="saliency"))
    torch.testing.assert_close(second, saliency.attribute(model, x, want[:, 1], method="saliency"))
    assert first.shape == second.shape == (5, 1, H, W)


# --------------------------------------------------------------------------- agreement with masks


def test_mask_agreement_reference():
    attr = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 0.0], [0.0, 0.0]]], [[[0.0, 5.0], [0.0, 0.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.5], [0.0, 0.0]]]])
    share = saliency.mask_agreement(attr, mask)
    assert share[0] == pytest.approx(0.5)
    assert math.isnan(share[1])
    assert share[2] == pytest.approx(0.5)  # soft mask weighs the pixel
    assert saliency.mask_agreement(attr[:1], mask[:1].bool())[0] == pytest.approx(0.5)


def test_pointing_game_reference_and_tolerance():
    attr = torch.zeros(3, 1, 7, 7)
    attr[0, 0, 1, 1] = 1.0   # peak on the object
    attr[1, 0, 5, 5] = 1.0   # peak 2 px right and 2 px below the object's corner (distance 2.83)
    mask = torch.zeros(3, 1, 7, 7)
    mask[:, :, :4, :4] = 1   # object: rows/cols 0..3
    hits = saliency.pointing_game(attr, mask)
    assert hits.dtype == torch.bool
    assert hits.tolist() == [True, False, False]  # an all-zero map is a miss
    assert saliency.pointing_game(attr, mask, tolerance=2).tolist() == [True, False, False]
    assert saliency.pointing_game(attr, mask, tolerance=3).tolist() == [True, True, False]
    attr[1, 0, 3, 5] = 2.0   # new peak 2 px right of the object, same row
    assert saliency.pointing_game(attr, mask, tolerance=1).tolist() == [True, False, False]
    assert saliency.pointing_game(attr, mask, tolerance=2).tolist() == [True, True, False]


def test_saliency_agreement_on_a_model_that_looks_only_at_the_object():
    model = _linear_model()
    x = _images(5)
    labels = torch.tensor([0, 1, 2, 0, 1])
    inside = saliency.saliency_agreement(model, x, _region_mask(5), labels, method="saliency", batch_size=2)
    assert inside["mask_share"] == pytest.approx(1.0)
    assert inside["pointing"] == 1.0
    outside = saliency.saliency_agreement(model, x, 1 - _region_mask(5), labels, method="saliency", batch_size=2)
    assert outside["mask_share"] == pytest.approx(0.0)
    assert outside["pointing"] == 0.0
    ig = saliency.saliency_agreement(model, x, _region_mask(5), labels, method="integrated_gradients", n_steps=4)
    assert ig == {"mask_share": pytest.approx(1.0), "pointing": 1.0}


# --------------------------------------------------------------------------- argument errors


def test_attribute_argument_errors():
    model = _linear_model()
    x = _images()
    with pytest.raises(ValueError, match="method"):
        saliency.attribute(model, x, 0, method="lime")
    with pytest.raises(ValueError, match="images"):
        saliency.attribute(model, x[0], 0)
    with pytest.raises(TypeError, match="images"):
        saliency.attribute(model, x.long(), 0)
    with pytest.raises(ValueError, match="target"):
        saliency.attribute(model, x, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="target"):
        saliency.attribute(model, x, 1.5)
    with pytest.raises(ValueError, match="target"):
        saliency.attribute(model, x, -1)
    with pytest.raises(TypeError, match="model"):
        saliency.attribute(lambda t: t, x, 0)
    with pytest.raises(ValueError, match="n_steps"):
        saliency.attribute(model, x, 0, method="integrated_gradients", n_steps=0)
    with pytest.raises(TypeError, match="n_steps"):
        saliency.attribute(model, x, 0, method="saliency", n_steps=4)
    with pytest.raises(ValueError, match="last_conv"):
        saliency.attribute(model, x, 0, method="gradcam")
    with pytest.raises(ValueError, match="interpolate_mode"):
        saliency.attribute(_CamModel(), x, 0, method="gradcam", interpolate_mode="linear")


def test_mask_argument_errors():
    attr = torch.rand(2, 1, 4, 4)
    mask = torch.ones(2, 1, 4, 4)
    with pytest.raises(ValueError, match="object_mask"):
        saliency.mask_agreement(attr, mask[:, :, :2])
    with pytest.raises(ValueError, match="attr"):
        saliency.mask_agreement(attr.expand(2, 3, 4, 4), mask)
    with pytest.raises(ValueError, match="attr"):
        saliency.pointing_game(-attr, mask)
    with pytest.raises(ValueError, match="tolerance"):
        saliency.pointing_game(attr, mask, tolerance=-1)
    model = _linear_model()
    with pytest.raises(ValueError, match="object_masks"):
        saliency.saliency_agreement(model, _images(), _region_mask(2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        saliency.saliency_agreement(model, _images(), _region_mask(3), torch.tensor([0, 1]))
