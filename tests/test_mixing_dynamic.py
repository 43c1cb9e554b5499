"""Dynamic policies: saliency, the graph cut, and what the extra pass leaves behind."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mixviz.mixing import (
    fine_grained_saliency,
    graph_cut_masks,
    input_gradient_saliency,
    mix,
    spectral_residual_saliency,
)


class EnergyModel(nn.Module):
    """logits = [w * sum(x**2), 0]: with label 0 the input gradient is
    proportional to x, so the saliency is |x| (up to a per-sample factor)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = self.w * (x ** 2).flatten(1).sum(1)
        return torch.stack([energy, torch.zeros_like(energy)], 1)


def small_cnn(channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).train()


def swap_seed() -> int:
    """A seed whose first draw, randperm(2), pairs the two samples with each other."""
    for seed in range(100):
        if torch.randperm(2, generator=torch.Generator().manual_seed(seed)).tolist() == [1, 0]:
            return seed
    raise AssertionError("no seed found")


# --------------------------------------------------------------------------- graph cut


def brute_force(cost_a, cost_b, w_down, w_right):
    n = cost_a.shape[0]
    best, best_m = np.inf, None
    for bits in itertools.product([0, 1], repeat=n * n):
        m = np.array(bits, dtype=float).reshape(n, n)
        e = (m * cost_a + (1 - m) * cost_b).sum()
        e += (w_down * (m[:-1] != m[1:])).sum() + (w_right * (m[:, :-1] != m[:, 1:])).sum()
        if e < best - 1e-12:
            best, best_m = e, m
    return best, best_m


@pytest.mark.parametrize("n", [1, 2, 3])
def test_graph_cut_is_exact(n):
    rng = np.random.default_rng(n)
    b = 6
    cost_a, cost_b = rng.normal(size=(b, n, n)), rng.normal(size=(b, n, n))
    w_down, w_right = rng.uniform(0, 1.5, size=(b, n - 1, n)), rng.uniform(0, 1.5, size=(b, n, n - 1))
    got = graph_cut_masks(cost_a, cost_b, w_down, w_right)
    assert got.shape == (b, n, n) and got.dtype == bool
    for s in range(b):
        m = got[s].astype(float)
        energy = (m * cost_a[s] + (1 - m) * cost_b[s]).sum()
        energy += (w_down[s] * (m[:-1] != m[1:])).sum() + (w_right[s] * (m[:, :-1] != m[:, 1:])).sum()
        best, _ = brute_force(cost_a[s], cost_b[s], w_down[s], w_right[s])
        assert energy == pytest.approx(best, abs=1e-9)


def test_graph_cut_rejects_negative_weights():
    with pytest.raises(ValueError, match="weight"):
        graph_cut_masks(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), -np.ones((1, 1, 2)), np.zeros((1, 2, 1)))


# --------------------------------------------------------------------------- PuzzleMix (the reduced variant;
# the published one is tested in test_puzzlemix.py)


def quadrant_images() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, :4, :4] = 1.0  # object of sample 0: top left
    x[1, 0, 4:, 4:] = 1.0  # object of sample 1: bottom right
    return x, torch.zeros(2, dtype=torch.long)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_puzzlemix_keeps_salient_blocks_of_both_images(alpha):
    x, y = quadrant_images()
    out = mix("puzzlemix_lite", x, y, alpha=alpha, generator=torch.Generator().manual_seed(swap_seed()),
              model=EnergyModel(), block_num=2)
    assert out.index.tolist() == [1, 0]
    for i, (own, other) in enumerate([((slice(0, 4), slice(0, 4)), (slice(4, 8), slice(4, 8))),
                                      ((slice(4, 8), slice(4, 8)), (slice(0, 4), slice(0, 4)))]):
        assert bool((out.mask[i, 0][own] == 1).all())    # own object kept
        assert bool((out.mask[i, 0][other] == 0).all())  # partner's object pasted
        assert bool((out.inputs[i, 0][own] == 1).all() and (out.inputs[i, 0][other] == 1).all())
    assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))


def test_puzzlemix_masks_are_blockwise():
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    out = mix("puzzlemix_lite", x, y, generator=torch.Generator().manual_seed(1), model=small_cnn(), block_num=4)
    blocks = out.mask.view(5, 1, 4, 4, 4, 4)
    assert bool((blocks == blocks[..., :1, :, :1]).all())
    assert bool(((out.mask == 0) | (out.mask == 1)).all())


def test_puzzlemix_prior_follows_lam_when_saliency_is_flat():
    """Flat saliency: only the label prior decides, the whole image goes to the likelier side."""
    x = torch.ones(64, 1, 8, 8)
    y = torch.zeros(64, dtype=torch.long)
    out = mix("puzzlemix_lite", x, y, generator=torch.Generator().manual_seed(3), model=EnergyModel(),
              correct_lam=False, block_num=4)
    share = out.mask.mean((1, 2, 3))
    assert torch.equal(share, (out.lam > 0.5).float())


def test_puzzlemix_options_are_checked():
    x, y = quadrant_images()
    with pytest.raises(ValueError, match="block_num"):
        mix("puzzlemix", x, y, model=EnergyModel(), block_num=16)
    with pytest.raises(ValueError, match="eta"):
        mix("puzzlemix", x, y, model=EnergyModel(), eta=-1.0)
    with pytest.raises(ValueError, match="saliency_mode"):
        mix("puzzlemix", x, y, model=EnergyModel(), saliency_mode="test")


# --------------------------------------------------------------------------- SaliencyMix


def test_saliencymix_box_is_centred_on_partner_peak():
    b, size = 6, 15
    x = torch.zeros(b, 1, size, size)
    g = torch.Generator().manual_seed(0)
    peaks = torch.randint(1, size - 1, (b, 2), generator=g)
    for dr, dc in itertools.product((-1, 0, 1), repeat=2):  # 3x3 objects: a unique peak after smoothing
        x[torch.arange(b), 0, peaks[:, 0] + dr, peaks[:, 1] + dc] = 1.0
    y = torch.zeros(b, dtype=torch.long)
    out = mix("saliencymix", x, y, generator=torch.Generator().manual_seed(1), model=EnergyModel(), alpha=0.5,
              saliency="gradient")
    for i in range(b):
        pr, pc = peaks[out.index[i]].tolist()
        inside = (out.mask[i, 0] == 0).nonzero()
        if inside.numel() == 0:
            continue
        assert out.mask[i, 0, pr, pc] == 0  # the partner's peak is pasted
        centre = (inside.min(0).values + inside.max(0).values).float() / 2
        # centred on the peak unless clipped at the border
        for axis, p in enumerate((pr, pc)):
            lo, hi = int(inside[:, axis].min()), int(inside[:, axis].max())
            if lo > 0 and hi < size - 1:
                assert abs(float(centre[axis]) - p) <= 0.5


def test_saliencymix_model_free_saliency_needs_no_model():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for saliency in ("fine_grained", "spectral"):
        out = mix("saliencymix", x, torch.arange(4), saliency=saliency, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out.lam, out.mask.mean((1, 2, 3)))
    with pytest.raises(ValueError, match="saliency"):
        mix("saliencymix", x, torch.arange(4), saliency="opencv", model=small_cnn())


def test_spectral_residual_finds_the_odd_patch():
    x = torch.full((1, 3, 32, 32), 0.5)
    x[0, :, 20:23, 6:9] = 1.0
    for size in (64, None):
        sal = spectral_residual_saliency(x, size=size)
        assert sal.shape == (1, 32, 32)
        r, c = divmod(int(sal[0].argmax()), 32)
        assert 18 <= r <= 24 and 4 <= c <= 10
    with pytest.raises(ValueError, match="window"):
        spectral_residual_saliency(x, window=4)
    with pytest.raises(TypeError, match="size"):
        spectral_residual_saliency(x, size=6.5)


def test_spectral_residual_matches_opencv_on_photos():
    """OpenCV's StaticSaliencySpectralResidual (the maps saliency="spectral" reproduces) on
    scikit-learn's two sample photos (427 x 640): after scaling each map to [0, 1], correlation >= 0.999,
    largest pixel difference <= 0.03 (measured: 0.99996 / 0.0100 and 0.99998 / 0.0091; the gap is OpenCV's
    uint8 gray image and fixed-point resize), and the same most salient pixel."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "saliency"):
        pytest.skip("OpenCV without the contrib saliency module")
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255
    ours = spectral_residual_saliency(x).numpy()
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    for photo, mine in zip(photos, ours):
        ok, ref = detector.computeSaliency(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        assert ok and ref.shape == mine.shape
        ref, mine = (ref - ref.min()) / np.ptp(ref), (mine - mine.min()) / np.ptp(mine)
        assert np.corrcoef(ref.ravel(), mine.ravel())[0, 1] >= 0.999
        assert np.abs(ref - mine).max() <= 0.03
        assert ref.argmax() == mine.argmax()
    # small images (mixviz's data sets are 16-32 px): 32-px thumbnails of 96-px crops, both methods
    # upsampling to 64 px; OpenCV's 8-bit rounding weighs more here (measured median correlation 0.986)
    rng = np.random.default_rng(0)
    corners = rng.integers(0, (427 - 96, 640 - 96), size=(100, 2))
    thumbs = np.stack([cv2.resize(photos[k % 2][r:r + 96, c:c + 96], (32, 32), interpolation=cv2.INTER_AREA)
                       for k, (r, c) in enumerate(corners)])
    ours = spectral_residual_saliency(torch.from_numpy(thumbs).permute(0, 3, 1, 2).float() / 255).numpy()
    corr = [np.corrcoef(detector.computeSaliency(cv2.cvtColor(t, cv2.COLOR_RGB2BGR))[1].ravel(), m.ravel())[0, 1]
            for t, m in zip(thumbs, ours)]
    assert np.median(corr) >= 0.97


@pytest.mark.parametrize("saliency", ["fine_grained", "spectral"])
def test_saliencymix_box_is_the_authors_box_on_the_8bit_peak(saliency):
    """No model: the box of sides int(sqrt(1 - lam) * size), edges side // 2 from the partner's peak, cut at
    the border; the peak is the authors' np.argmax((map * 255).astype("uint8")), the first maximum in
    row-major order of the map stored in 8 bits.  fine_grained is the default."""
    b, h, w = 16, 20, 24
    x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(0))
    options = {} if saliency == "fine_grained" else {"saliency": saliency}
    out = mix("saliencymix", x, torch.arange(b), generator=torch.Generator().manual_seed(2), correct_lam=False,
              **options)
    maps = (fine_grained_saliency(x) if saliency == "fine_grained" else spectral_residual_saliency(x)).numpy()
    peaks = [divmod(int(np.argmax((m * 255).astype("uint8"))), w) for m in maps]
    for i in range(b):
        py, px = peaks[out.index[i]]
        s = math.sqrt(1 - float(out.lam[i]))
        half_h, half_w = int(s * h) // 2, int(s * w) // 2
        want = torch.ones(h, w)
        want[max(py - half_h, 0):py + half_h, max(px - half_w, 0):px + half_w] = 0
        assert torch.equal(out.mask[i, 0], want), i
    shared = mix("saliencymix", x, torch.arange(b), generator=torch.Generator().manual_seed(2), per_sample=False,
                 **options)
    assert bool((shared.mask == shared.mask[:1]).all()) and bool((shared.lam == shared.lam[0]).all())
    py, px = peaks[shared.index[0]]  # the authors' box: sample 0's partner's peak
    assert shared.mask[0, 0, py, px] == 0 or bool((shared.mask == 1).all())


def _opencv_fine_grained():
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "saliency"):
        pytest.skip("OpenCV without the contrib saliency module")
    detector = cv2.saliency.StaticSaliencyFineGrained_create()

    def reference(images: np.ndarray) -> np.ndarray:  # [B, H, W, 3] RGB or [B, H, W] uint8
        if images.ndim == 4:
            images = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in images]
        maps = []
        for img in images:
            ok, sal = detector.computeSaliency(img)
            assert ok
            maps.append(sal)
        return np.stack(maps)

    return cv2, reference


def _as_batch(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float() / 255
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)


def _assert_same_maps(images: np.ndarray, reference) -> None:
    """OpenCV works in 8 bits and float32 throughout, and so does fine_grained_saliency: the maps agree
    bit for bit (tolerance 0; measured 0 on every image below), hence so does the authors' peak."""
    ref, ours = reference(images), fine_grained_saliency(_as_batch(images)).numpy()
    assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)
    flat = lambda maps: (maps * 255).astype("uint8").reshape(len(maps), -1)  # noqa: E731
    assert (flat(ours).argmax(1) == flat(ref).argmax(1)).all()


@pytest.mark.parametrize("size", [32, 64, 128, None])
def test_fine_grained_matches_opencv_on_photos(size):
    """scikit-learn's two sample photos (427 x 640, None) and 20 crops of them, scaled to 32, 64 and 128 px."""
    cv2, reference = _opencv_fine_grained()
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    if size is None:
        _assert_same_maps(np.stack(photos), reference)  # 255 H W > 2**24: OpenCV's float32 integral rounds
        return
    corners = np.random.default_rng(size).integers(0, (427 - 96, 640 - 96), size=(20, 2))
    images = [cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in photos]
    images += [cv2.resize(photos[k % 2][r:r + 96, c:c + 96], (size, size), interpolation=cv2.INTER_AREA)
               for k, (r, c) in enumerate(corners)]
    _assert_same_maps(np.stack(images), reference)


@pytest.mark.parametrize("size", [16, 32])
def test_fine_grained_matches_opencv_on_clutter(size):
    _, reference = _opencv_fine_grained()
    from mixviz.data import clutter

    images = clutter.generate(64, "test", seed=0, size=size).images
    _assert_same_maps((images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), reference)


def test_fine_grained_matches_opencv_on_edge_cases():
    """Gray images that reach OpenCV's corner cases: a flat image (no contrast: all 0), a faint dot (no
    on-centre contrast at all), 2 x 2, one row / one column (mirrored border on a single pixel), and a
    mid-gray patch inside a dark square on white, whose centre is both brighter than its small surrounds and
    darker than its large ones: on + off = 264, which OpenCV stores in 8 bits as 8."""
    _, reference = _opencv_fine_grained()
    dot = np.full((24, 24), 200, np.uint8)
    dot[12, 12] = 150
    row = np.array([[10, 200, 30, 40, 250, 0]], np.uint8)
    square = np.full((200, 200), 255, np.uint8)
    square[75:125, 75:125] = 0
    square[98:103, 98:103] = 200
    for image in (np.full((9, 13), 77, np.uint8), dot, np.array([[0, 255], [255, 0]], np.uint8), row, row.T,
                  square):
        _assert_same_maps(image[None], reference)
    assert float(fine_grained_saliency(_as_batch(square[None]))[0, 100, 100]) * 255 == pytest.approx(8)
    assert not fine_grained_saliency(_as_batch(np.full((1, 9, 13), 77, np.uint8))).any()
    assert fine_grained_saliency(_as_batch(dot[None]))[0, 12, 12] == 1  # the off-centre map alone


def test_fine_grained_8bit_scaling_needs_no_double():
    """OpenCV scales each summed map by floor(255.0 * float32(s / m)) in double; in float32 the product is
    floored the same for every 0 <= s <= m <= 1530 (six 8-bit scales), so no float64 is needed on device."""
    m = torch.arange(1, 1531).repeat_interleave(torch.arange(2, 1532))
    s = torch.cat([torch.arange(k + 1) for k in range(1, 1531)])
    q = s.float() / m.float()
    assert torch.equal(torch.floor(q * 255).double(), torch.floor(q.double() * 255))


def test_fine_grained_finds_the_odd_patch():
    x = torch.full((2, 3, 32, 32), 0.5)
    x[0, :, 20:23, 6:9] = 1.0
    x[1, :, 4:7, 25:28] = 0.0  # darker than its surround: off-centre
    sal = fine_grained_saliency(x)
    assert sal.shape == (2, 32, 32) and sal.dtype == torch.float32 and float(sal.min()) >= 0 and sal.amax() == 1
    for k, (r0, c0) in enumerate([(20, 6), (4, 25)]):
        # on and off are each scaled to 255 by their own peak, so a map has two or more pixels at 1
        # (here the patch and a pixel it contrasts with); the patch holds one of them
        assert sal[k, r0:r0 + 3, c0:c0 + 3].max() == 1
    with pytest.raises(ValueError, match="x must be 4-D"):
        fine_grained_saliency(x[0])


# --------------------------------------------------------------------------- the extra pass


def test_input_gradient_saliency_reference():
    model = small_cnn()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1])
    sal = input_gradient_saliency(model, x, y)
    model.eval()
    ref_x = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(model(ref_x), y, reduction="sum").backward()
    model.zero_grad()
    torch.testing.assert_close(sal, ref_x.grad.pow(2).mean(1).sqrt())


@pytest.mark.parametrize("policy", ["saliencymix", "puzzlemix", "puzzlemix_lite"])
def test_extra_pass_leaves_model_untouched(policy):
    options = {"saliency": "gradient"} if policy == "saliencymix" else {}
    model = small_cnn()
    model[2].eval()  # a user's own per-module mode must survive
    flags = [m.training for m in model.modules()]
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # works inside no_grad too: the input gradient is taken with enable_grad
        mix(policy, x, torch.tensor([0, 1, 2, 0]), model=model, **options)
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), k  # eval-mode pass: BatchNorm running stats unchanged


def test_train_mode_saliency_updates_batchnorm_stats():
    model = small_cnn()
    before = model[1].running_mean.clone()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mix("puzzlemix", x, torch.tensor([0, 1, 2, 0]), model=model, saliency_mode="train")
    assert not torch.equal(model[1].running_mean, before)
    assert model.training and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("fn", ["fine_grained_saliency", "spectral_residual_saliency"])
def test_model_free_saliency_rejects_bad_images(fn):
    from mixviz.mixing import dynamic

    saliency = getattr(dynamic, fn)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        saliency([[0.0]])
    with pytest.raises(ValueError, match="x must be 4-D"):
        saliency(torch.zeros(2, 8, 8))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        saliency(torch.zeros(1, 3, 8, 8, dtype=torch.long))
