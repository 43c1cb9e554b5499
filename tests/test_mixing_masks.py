"""The mask builders of the static policies: areas, shapes and reference computations."""

from __future__ import annotations

import math
import random

import numpy as np
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


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    points = np.union1d(a, b)
    cdf = lambda s: np.searchsorted(np.sort(s), points, side="right") / len(s)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def authors_grid_holes(lam: float, height: int, width: int, n_holes: int, hole_aspect: float = 1.0,
                       area: float = 1.0, aspect: float = 1.0, fx: float = 0.0, fy: float = 0.0) -> np.ndarray:
    """Our transcription of the GridMix authors' rule (OpenMixup), painted hole by hole: a crop of
    int(sqrt(area H W / aspect)) x int(that * aspect) pixels at fraction (fx, fy) of the free room; patches
    ceil(crop width / n_holes) wide and int(width * hole_aspect) high; in the top-left corner of each a hole
    whose sides are int(patch side * sqrt(1 - lam)), kept between 1 and the patch side - 1.  Returns 1 on
    the holes (the partner's pixels)."""
    crop_w = int(math.sqrt(height * width * area / aspect))
    crop_h = int(crop_w * aspect)
    left, top = int((width - crop_w) * fx), int((height - crop_h) * fy)
    patch_w = math.ceil(crop_w / n_holes)
    patch_h = int(patch_w * hole_aspect)
    rows_of_patches = math.ceil(crop_h / patch_h)
    scale = math.sqrt(1 - lam)
    hole_w = min(max(int(patch_w * scale), 1), patch_w - 1)
    hole_h = min(max(int(patch_h * scale), 1), patch_h - 1)
    holes = np.zeros((height, width))
    for i in range(n_holes + 1):
        for j in range(rows_of_patches + 1):
            x1, y1 = min(patch_w * i, crop_w), min(patch_h * j, crop_h)
            x2, y2 = min(x1 + hole_w, crop_w), min(y1 + hole_h, crop_h)
            holes[top + y1:top + y2, left + x1:left + x2] = 1
    return holes


@pytest.mark.parametrize("size,n_holes,hole_aspect", [((32, 32), 20, 1.0), ((64, 64), 8, 1.0), ((40, 40), 6, 1.5),
                                                      ((24, 24), 4, 0.5), ((30, 30), 15, 1.0)])
def test_grid_mask_is_the_authors_hole_grid(size, n_holes, hole_aspect):
    """With the crop the whole image (cut_area_ratio 1) the grid is fixed by lam: equal to the painted one."""
    lams = torch.tensor([0.0, 0.1, 0.3, 0.55, 0.77, 0.9, 0.99, 1.0])
    masks = grid_mask(lams, *size, n_holes=n_holes, hole_aspect_ratio=hole_aspect, cut_area_ratio=1.0,
                      cut_aspect_ratio=1.0, generator=gen(0))
    for lam, mask in zip(lams.tolist(), masks[:, 0]):
        want = 1 - authors_grid_holes(lam, *size, n_holes, hole_aspect)
        assert np.array_equal(mask.numpy(), want), lam


def test_grid_mask_crop_is_the_authors_grid_moved():
    """A smaller crop (area ratio 0.5, aspect 1.25): the same grid as the authors', shifted to the crop."""
    lam = torch.full((64,), 0.4)
    masks = grid_mask(lam, 48, 48, n_holes=6, cut_area_ratio=0.5, cut_aspect_ratio=1.25, generator=gen(3))
    ref = 1 - authors_grid_holes(0.4, 48, 48, 6, area=0.5, aspect=1.25)  # the crop at the top-left corner
    lefts, tops = set(), set()
    for mask in masks[:, 0]:
        holes = (mask == 0).nonzero()
        top, left = holes.min(0).values.tolist()
        assert np.array_equal(mask.numpy(), np.roll(ref, (top, left), axis=(0, 1)))
        lefts.add(left)
        tops.add(top)
    assert len(lefts) > 3 and len(tops) > 3  # the crop moves


def test_gridmix_lam_distribution_matches_the_authors_function_defaults():
    """At alpha 0.2 with OpenMixup's function defaults (the crop the whole image): at 32 px 20 holes of
    2-px patches always show 1-px holes, lam = 0.75 whatever Beta draws; at 64 px with 8 holes lam follows
    the draw.  Never lam = 1."""
    rng = np.random.default_rng(0)
    for size, n_holes, draws in ((32, 20, 500), (64, 8, 2000)):
        ref = np.array([1 - authors_grid_holes(float(np.float32(lam)), size, size, n_holes).mean()
                        for lam in rng.beta(0.2, 0.2, draws)])
        x = torch.rand(4000, 1, size, size, generator=gen(1))
        out = mix("gridmix", x, torch.zeros(4000, dtype=torch.long), alpha=0.2, generator=gen(2), n_holes=n_holes,
                  cut_area_ratio=1.0, cut_aspect_ratio=1.0)
        lam = out.lam.double().numpy().round(6)  # float32 shares next to float64 ones: compare rounded
        ref = ref.round(6)
        assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))
        assert (lam < 1).all() and (ref < 1).all()
        assert abs(lam.mean() - ref.mean()) < 0.01, (size, lam.mean(), ref.mean())
        # lam takes a few values (one per hole size): compare the CDFs (KS 5 % critical value 0.037 here)
        assert ks_statistic(lam, ref) < 0.04, size
        if size == 32:
            assert (lam == 0.75).all() and (ref == 0.75).all()


def authors_config_grid_share(rng: np.random.Generator, lam: float, size: int) -> float:
    """The share of a under the authors' configs' GridMix options (n_holes 2..6, square holes, crop area
    ratio U(0.5, 1), crop aspect ratio U(0.5, 2)), with the crop capped at the image as mixviz does (the
    authors' code would take a negative offset there)."""
    n_holes = int(rng.integers(2, 7))
    area, aspect = rng.uniform(0.5, 1.0), rng.uniform(0.5, 2.0)
    crop_w = min(int(math.sqrt(size * size * area / aspect)), size)
    aspect = min(int(crop_w * aspect), size) / crop_w  # the capped crop height, as a ratio
    n_holes = min(n_holes, crop_w // 2)
    fx, fy = rng.random(), rng.random()
    holes = authors_grid_holes(lam, size, size, n_holes, area=crop_w ** 2 * aspect / size ** 2, aspect=aspect,
                               fx=fx, fy=fy)
    return 1 - holes.mean()


def test_gridmix_default_is_the_authors_configs():
    """The default options are those of every OpenMixup config with GridMix; at alpha 0.2 and 32 px the
    distribution of lam matches the transcription (mean within 0.01, KS under 0.05) and lam is never 1."""
    rng = np.random.default_rng(0)
    ref = np.array([authors_config_grid_share(rng, float(np.float32(lam)), 32) for lam in rng.beta(0.2, 0.2, 3000)])
    out = mix("gridmix", torch.rand(3000, 1, 32, 32, generator=gen(1)), torch.zeros(3000, dtype=torch.long),
              alpha=0.2, generator=gen(2))
    lam = out.lam.double().numpy()
    assert abs(lam.mean() - ref.mean()) < 0.01, (lam.mean(), ref.mean())
    assert ks_statistic(lam.round(6), ref.round(6)) < 0.05
    assert (lam < 1).all() and (ref < 1).all() and lam.std() > 0.05  # lam follows the draw


def test_grid_mask_small_images_and_option_checks():
    """n_holes is capped at crop width // 2 (the authors assert it); a 1-px crop has no room for holes."""
    lam = torch.full((3,), 0.5)
    whole = dict(cut_area_ratio=1.0, cut_aspect_ratio=1.0)
    assert torch.equal(grid_mask(lam, 8, 8, n_holes=20, generator=gen(0), **whole),
                       grid_mask(lam, 8, 8, n_holes=4, generator=gen(0), **whole))
    assert bool((grid_mask(lam, 1, 1, generator=gen(0)) == 1).all())
    ranged = grid_mask(torch.full((200,), 0.5), 40, 40, n_holes=(2, 10), hole_aspect_ratio=(0.5, 2.0),
                       generator=gen(1))
    assert ranged.mean((1, 2, 3)).unique().numel() > 5
    for kw, err in [({"n_holes": 0}, ValueError), ({"n_holes": 2.5}, TypeError), ({"cut_area_ratio": 1.5}, ValueError),
                    ({"hole_aspect_ratio": (2.0, 1.0)}, ValueError), ({"cut_aspect_ratio": "1"}, TypeError)]:
        with pytest.raises(err, match=next(iter(kw))):
            grid_mask(lam, 8, 8, **kw)


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


def authors_resizemix_lam(rng: random.Random, size: int, scope=(0.1, 0.8), alpha: float | None = None) -> float:
    """Our transcription of the ResizeMix authors' rule (OpenMixup, use_alpha=False unless alpha is given):
    the scale tau is uniform on the scope (or Beta(alpha, alpha), drawn again uniformly on the scope
    when outside it); the box is int(tau * size) pixels a side, its centre a uniform pixel, each edge
    (side // 2) pixels from the centre, and cut where it leaves the image; lam is the share left to a."""
    tau = rng.uniform(*scope)
    if alpha is not None:
        beta = rng.betavariate(alpha, alpha)
        tau = beta if scope[0] <= beta <= scope[1] else tau
    half = int(size * tau) // 2
    cy, cx = rng.randrange(size), rng.randrange(size)
    rows = min(cy + half, size) - max(cy - half, 0)
    cols = min(cx + half, size) - max(cx - half, 0)
    return 1 - rows * cols / size ** 2


@pytest.mark.parametrize("alpha,use_alpha", [(1.0, False), (1.0, True), (0.2, False), (0.2, True)])
def test_resizemix_lam_distribution_is_the_authors(alpha, use_alpha):
    """20,000 per-sample draws on 32 x 32 images against 20,000 of the transcription: mean lam within
    0.005, quantiles within 0.02, KS statistic under 0.02 (the 5 % critical value for two samples
    of 20,000 is 0.0136).  At alpha 1 the mean is OpenMixup's measured 0.841 (within 0.02)."""
    n, size = 20_000, 32
    rng = random.Random(0)
    ref = np.array([authors_resizemix_lam(rng, size, alpha=alpha if use_alpha else None) for _ in range(n)])
    x = torch.rand(n, 1, size, size, generator=gen(0))
    out = mix("resizemix", x, torch.zeros(n, dtype=torch.long), alpha=alpha, generator=gen(1), use_alpha=use_alpha)
    lam = out.lam.numpy().astype(np.float64)
    assert abs(lam.mean() - ref.mean()) < 0.005, (lam.mean(), ref.mean())
    qs = np.linspace(0.05, 0.95, 19)
    # lam is discrete (box sides are whole pixels): a quantile may sit one step of the lattice apart
    assert np.abs(np.quantile(lam, qs) - np.quantile(ref, qs)).max() <= 0.02
    assert ks_statistic(lam, ref) < 0.02
    if alpha == 1.0:
        assert abs(lam.mean() - 0.841) < 0.02
    if use_alpha:  # the default: every config of the authors sets use_alpha=True
        default = mix("resizemix", x, torch.zeros(n, dtype=torch.long), alpha=alpha, generator=gen(1))
        assert torch.equal(default.lam, out.lam)


def test_resizemix_tau_is_uniform_on_the_scope_without_use_alpha():
    """With use_alpha=False alpha does not shape tau: at alpha 0.2 each decile of the scope holds about a
    tenth of the draws (the old Beta-on-scope draw put 37 % in the first)."""
    n = 20_000
    out = mix("resizemix", torch.rand(n, 1, 20, 20), torch.zeros(n, dtype=torch.long), alpha=0.2, generator=gen(4),
              correct_lam=False, use_alpha=False)
    tau = (1 - out.lam.double()).sqrt()
    deciles = torch.histc(((tau - 0.1) / 0.7).clamp(0, 1 - 1e-9).float(), bins=10, min=0, max=1) / n
    assert bool(((deciles - 0.1).abs() < 0.012).all()), deciles


@pytest.mark.parametrize("placement", ["clip", "inside"])
def test_resizemix_pastes_resized_partner(placement):
    x = torch.rand(6, 3, 12, 10, generator=gen(0))
    y = torch.arange(6)
    out = mix("resizemix", x, y, generator=gen(7), scope=(0.2, 0.9), placement=placement)
    for i in range(6):
        box = (out.mask[i, 0] == 0).nonzero()
        (r0, c0), (r1, c1) = box.min(0).values.tolist(), box.max(0).values.tolist()
        h, w = r1 - r0 + 1, c1 - c0 + 1
        assert h * w == box.shape[0]
        small = F.interpolate(x[out.index[i]][None], size=(h, w), mode="nearest")[0]
        assert torch.equal(out.inputs[i, :, r0:r1 + 1, c0:c1 + 1], small)  # the whole partner, in the box
        outside = out.mask[i, 0] == 1
        assert torch.equal(out.inputs[i][:, outside], x[i][:, outside])
        assert float(out.lam[i]) == pytest.approx(1 - h * w / 120, abs=1e-6)
        if placement == "inside":  # tau in the scope: box sides are round(tau * size)
            assert 0.2 * 12 - 0.5 <= h <= 0.9 * 12 + 0.5
        else:  # 2 (int(tau * size) // 2) before clipping
            assert 1 <= h <= 10 and 1 <= w <= 8


@pytest.mark.parametrize("placement", ["clip", "inside"])
def test_resizemix_uncorrected_lam_is_one_minus_tau_squared(placement):
    x = torch.rand(200, 1, 20, 20)
    y = torch.zeros(200, dtype=torch.long)
    kept = mix("resizemix", x, y, generator=gen(1), correct_lam=False, placement=placement)
    tau = (1 - kept.lam).sqrt()
    assert float(tau.min()) >= 0.1 - 1e-6 and float(tau.max()) <= 0.8 + 1e-6
    box_side = (1 - kept.mask.mean((1, 2, 3))).sqrt() * 20
    if placement == "inside":
        assert bool(((box_side - tau * 20).abs() <= 0.5 + 1e-4).all())
    else:  # clipping only shrinks the box of side 2 (int(20 tau) // 2)
        assert bool((box_side <= 2 * ((tau * 20).floor() // 2).clamp_min(1) + 1e-4).all())
        assert bool((kept.mask.mean((1, 2, 3)) > 1 - tau ** 2 - 1e-6).float().mean() > 0.5)
    with pytest.raises(ValueError, match="placement"):
        mix("resizemix", x, y, placement="outside")
    with pytest.raises(TypeError, match="use_alpha"):
        mix("resizemix", x, y, use_alpha=1)
