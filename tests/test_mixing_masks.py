"""The mask builders of the static policies: areas, shapes and reference computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mixviz.mixing import box_mask, fourier_mask, gaussian_mask, grid_mask, mix


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=25, deadline=None)
@given(lam=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), h=st.integers(1, 17), w=st.integers(1, 17),
       decay=st.floats(0.5, 6.0), seed=st.integers(0, 2**16))
def test_fmix_masks_have_the_requested_area(lam, h, w, decay, seed):
    lam_t = torch.tensor(lam, dtype=torch.float32)
    mask = fourier_mask(lam_t, h, w, decay_power=decay, generator=gen(seed))
    assert mask.shape == (len(lam), 1, h, w)
    assert bool(((mask == 0) | (mask == 1)).all())
    want = torch.round(lam_t * h * w) / (h * w)
    assert torch.equal(mask.mean((1, 2, 3)), want)
    assert bool(((mask.mean((1, 2, 3)) - lam_t).abs() <= 0.5 / (h * w) + 1e-6).all())


def test_fmix_masks_are_low_frequency():
    """Higher decay power -> smoother masks -> fewer label changes between neighbours."""
    lam = torch.full((64,), 0.5)

    def edges(decay: float) -> float:
        m = fourier_mask(lam, 32, 32, decay_power=decay, generator=gen(1))
        return float((m[..., 1:, :] != m[..., :-1, :]).float().mean() + (m[..., 1:] != m[..., :-1]).float().mean())

    rough, smooth = edges(0.5), edges(4.0)
    assert smooth < 0.5 * rough
    assert smooth < 0.1  # a few large blobs, not salt and pepper


def test_fmix_policy_lam_is_sampled_area():
    x = torch.rand(32, 3, 8, 8)
    y = torch.zeros(32, dtype=torch.long)
    kept = mix("fmix", x, y, generator=gen(3), correct_lam=False)
    assert bool(((kept.mask.mean((1, 2, 3)) - kept.lam).abs() <= 0.5 / 64 + 1e-6).all())


@settings(max_examples=25, deadline=None)
@given(lam=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), h=st.integers(1, 20), w=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_box_mask_is_one_axis_aligned_box(lam, h, w, seed):
    mask = box_mask(torch.tensor(lam), h, w, generator=gen(seed))
    assert bool(((mask == 0) | (mask == 1)).all())
    for m, l in zip(mask[:, 0], lam):
        inside = (m == 0).nonzero()
        if inside.numel() == 0:
            continue
        (r0, c0), (r1, c1) = inside.min(0).values, inside.max(0).values
        assert int((m[r0:r1 + 1, c0:c1 + 1] == 0).sum()) == inside.shape[0]  # a full rectangle
        # before clipping the side is sqrt(1 - lam) * size (rounded edges: +-1 pixel)
        assert r1 - r0 + 1 <= math.sqrt(1 - l) * h + 1 + 1e-6
        assert c1 - c0 + 1 <= math.sqrt(1 - l) * w + 1 + 1e-6


def test_box_mask_area_matches_lam_when_unclipped():
    lam = torch.full((4000,), 0.75)
    mask = box_mask(lam, 64, 64, generator=gen(2))
    inner = mask.mean((1, 2, 3))
    # centres far from the border: the box is not clipped and its area is (1 - lam) H W up to rounding
    u = torch.rand((2, 4000), generator=gen(2))
    unclipped = ((u * 64 - 16).min(0).values >= 0) & ((u * 64 + 16).max(0).values <= 64)
    assert unclipped.sum() > 100
    assert bool(((inner[unclipped] - 0.75).abs() <= 2 * 32 / 4096 + 1e-6).all())
    assert float(inner.mean()) > 0.75  # clipping only removes partner pixels


def test_grid_mask_is_constant_on_cells():
    lam = torch.full((50,), 0.5)
    mask = grid_mask(lam, 12, 12, grid=(3, 3), generator=gen(0))
    cells = mask.view(50, 1, 3, 4, 3, 4)
    assert bool((cells == cells[..., :1, :, :1]).all())
    share = float(mask.mean())
    assert 0.35 < share < 0.65
    assert bool(((mask == 0) | (mask == 1)).all())


def test_grid_mask_follows_lam():
    lo = grid_mask(torch.full((200,), 0.1), 8, 8, generator=gen(0)).mean()
    hi = grid_mask(torch.full((200,), 0.9), 8, 8, generator=gen(0)).mean()
    assert float(lo) < 0.2 and float(hi) > 0.8


def test_gaussian_mask_reference_value():
    lam = torch.tensor([0.6])
    mask = gaussian_mask(lam, 5, 7, generator=gen(4))
    u = torch.rand((2, 1), generator=gen(4))
    cy, cx = float(u[0, 0]) * 5, float(u[1, 0]) * 7
    s = math.sqrt(0.4 / (2 * math.pi))
    for r in range(5):
        for c in range(7):
            g = math.exp(-((r + 0.5 - cy) / (s * 5)) ** 2 / 2 - ((c + 0.5 - cx) / (s * 7)) ** 2 / 2)
            assert abs(float(mask[0, 0, r, c]) - (1 - g)) < 1e-5


def test_gaussian_mask_mean_tracks_lam_without_clipping():
    lam = torch.full((1,), 0.9)
    # large image, centre drawn anywhere: integral of the bump is (1 - lam) H W unless clipped
    masks = gaussian_mask(lam.expand(500).clone(), 64, 64, generator=gen(5))
    means = masks.mean((1, 2, 3))
    assert float(means.min()) >= 0.9 - 1e-3  # clipping only adds share of a
    assert float((means - 0.9).abs().min()) < 2e-3


def test_resizemix_pastes_resized_partner():
    x = torch.rand(6, 3, 12, 10, generator=gen(0))
    y = torch.arange(6)
    out = mix("resizemix", x, y, generator=gen(7), scope=(0.2, 0.9))
    for i in range(6):
        box = (out.mask[i, 0] == 0).nonzero()
        (r0, c0), (r1, c1) = box.min(0).values.tolist(), box.max(0).values.tolist()
        h, w = r1 - r0 + 1, c1 - c0 + 1
        assert h * w == box.shape[0]
        small = F.interpolate(x[out.index[i]][None], size=(h, w), mode="nearest")[0]
        assert torch.equal(out.inputs[i, :, r0:r1 + 1, c0:c1 + 1], small)
        outside = out.mask[i, 0] == 1
        assert torch.equal(out.inputs[i][:, outside], x[i][:, outside])
        assert float(out.lam[i]) == pytest.approx(1 - h * w / 120, abs=1e-6)
        # tau in the scope: box sides are round(tau * size)
        assert 0.2 * 12 - 0.5 <= h <= 0.9 * 12 + 0.5


def test_resizemix_uncorrected_lam_is_one_minus_tau_squared():
    x = torch.rand(200, 1, 20, 20)
    y = torch.zeros(200, dtype=torch.long)
    kept = mix("resizemix", x, y, generator=gen(1), correct_lam=False)
    tau = (1 - kept.lam).sqrt()
    assert float(tau.min()) >= 0.1 - 1e-6 and float(tau.max()) <= 0.8 + 1e-6
    box_side = (1 - kept.mask.mean((1, 2, 3))).sqrt() * 20
    assert bool(((box_side - tau * 20).abs() <= 0.5 + 1e-4).all())
