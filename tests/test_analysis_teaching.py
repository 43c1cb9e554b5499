"""The analyses behind the notebooks' findings, on tiny models."""

import pytest
import torch
from torch import nn

from mixviz import analysis


class _Oracle(nn.Module):
    """Logits that rank two given classes first for every image (a fixed lookup by image index)."""

    def __init__(self, top: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.top, self.c = top, num_classes
        self.last_conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        n = x.shape[0]
        z = torch.zeros(n, self.c) + self.last_conv(x).mean((1, 2, 3))[:, None] * 0
        z[torch.arange(n), self.top[:n, 0]] = 5.0
        z[torch.arange(n), self.top[:n, 1]] = 4.0
        return z


def _data(n=24, c=5, size=8):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=gen)
    labels = torch.arange(n) % c
    masks = torch.zeros(n, 1, size, size)
    masks[:, :, 2:6, 2:6] = 1.0  # an object in the middle of every image
    return images, labels, masks


def test_pick_top2_example_takes_the_first_eligible_image_most_models_rank_right():
    images, labels, masks = _data()
    mixed = analysis.fixed_mixed_batch("cutmix", images, labels)
    right = torch.stack([mixed.y_a, mixed.y_b], 1)
    wrong = torch.stack([(mixed.y_a + 1) % 5, (mixed.y_a + 2) % 5], 1)
    wrong = torch.where((wrong == mixed.y_b[:, None]).any(1, keepdim=True), (wrong + 1) % 5, wrong)
    out = analysis.pick_top2_example({"right": _Oracle(right, 5), "wrong": _Oracle(wrong, 5)}, images, labels, masks,
                                     min_visible=0.0, lam_range=(0.0, 1.0))
    eligible = (mixed.y_a != mixed.y_b).nonzero()[:, 0]
    assert out["sample"] == int(eligible[0]) and out["ranked"]["right"] is True
    assert out["candidates"] == len(eligible) and "most models rank" in out["rule"]
    with pytest.raises(ValueError, match="lam_range"):
        analysis.pick_top2_example({"right": _Oracle(right, 5)}, images, labels, masks, lam_range=(0.8, 0.2))


def test_saliency_intervals_have_chance_levels_and_intervals():
    images, labels, masks = _data()
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5))
    table = analysis.saliency_intervals({"net": model}, images, labels, masks, attributions=("saliency",), limit=16)
    row = table.iloc[0]
    assert row["n_images"] == 16 and row["pointing_chance"] == 0.25 and row["mask_share_chance"] == 0.25
    assert 0 <= row["pointing"] <= 1 and row["pointing_ci"] > 0 and 0 < row["mixed_share_chance"] <= 0.25


def test_boundary_scores_match_the_notes():
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(50, 2, generator=gen), torch.randint(0, 2, (50,), generator=gen)
    net = nn.Linear(2, 2)
    scores = analysis.boundary_scores({"lin": net}, X, y).set_index("method")
    note = analysis.boundary_notes({"lin": net}, X, y)["lin"]
    assert f"test acc {100 * scores.loc['lin', 'accuracy']:.1f} %" in note
    assert f"ECE {100 * scores.loc['lin', 'ece']:.1f} %" in note
