import pytest
import torch

from mixviz.augment import random_crop_flip


def _reference(x, oy, ox, mirror, padding):
    """Per-sample crop and flip written the slow way."""
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    h, w = x.shape[2:]
    out = []
    for i in range(x.shape[0]):
        crop = padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out.append(crop.flip(-1) if mirror[i] else crop)
    return torch.stack(out)


def test_matches_per_sample_reference():
    x = torch.rand(9, 3, 6, 5)
    g = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, g, padding=2)
    # replay the same draws
    g = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 5, (9,), generator=g)
    ox = torch.randint(0, 5, (9,), generator=g)
    mirror = torch.rand(9, generator=g) < 0.5
    torch.testing.assert_close(out, _reference(x, oy, ox, mirror, 2), rtol=0, atol=0)


def test_same_seed_same_output_and_shape_kept():
    x = torch.rand(4, 1, 7, 9)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)


def test_identity_without_padding_or_flip():
    x = torch.rand(3, 2, 5, 5)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)


def test_bad_input():
    with pytest.raises(ValueError, match="x"):
        random_crop_flip(torch.rand(3, 5, 5))
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.rand(1, 3, 5, 5), padding=-1)


# --------------------------------------------------------------------------- RandAugment, Cutout

from torchvision.transforms.v2 import functional as TF  # noqa: E402

from mixviz.augment import (  # noqa: E402
    CUTOUT_FILL,
    GEOMETRIC_FILL,
    RAND_AUGMENT_OPS,
    crop_padding,
    cutout,
    cutout_size,
    rand_augment,
    strong_augment,
)


def _signs(seed, b, num_ops=1, pool=1):
    """Replay rand_augment's draws: (choice, fire, neg)."""
    g = torch.Generator().manual_seed(seed)
    choice = torch.randint(0, pool, (b, num_ops), generator=g)
    fire = torch.rand((b, num_ops), generator=g)
    neg = torch.rand((b, num_ops), generator=g) < 0.5
    return choice, fire, neg


def _one(x, name, seed=0, magnitude=1.0):
    return rand_augment(x, torch.Generator().manual_seed(seed), num_ops=1, p=1.0, ops=(name,), magnitude=magnitude)


def test_strong_augmentation_differs_per_sample_and_is_reproducible_from_the_seed():
    x = torch.rand(1, 3, 16, 16).expand(64, -1, -1, -1).contiguous()  # 64 copies of one image
    a = strong_augment(x, torch.Generator().manual_seed(5))
    b = strong_augment(x, torch.Generator().manual_seed(5))
    c = strong_augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    distinct = torch.unique(a.flatten(1), dim=0).shape[0]
    assert distinct > 40, distinct  # copies of one image come out different (a few draw nothing that fires)
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1


def test_grouped_and_masked_paths_give_the_same_images():
    x = torch.rand(96, 3, 12, 12)
    a = rand_augment(x, torch.Generator().manual_seed(1), grouped=True)
    b = rand_augment(x, torch.Generator().manual_seed(1), grouped=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_nothing_fires_with_p_zero_and_cutout_p_zero():
    x = torch.rand(8, 3, 10, 10)
    assert torch.equal(rand_augment(x, torch.Generator().manual_seed(0), p=0.0), x)
    assert torch.equal(cutout(x, torch.Generator().manual_seed(0), p=0.0), x)


def test_each_sample_draws_its_own_operations_with_replacement():
    # 3 slots from 2 ops, p = 1: the op counts per sample follow the replayed draws
    x = torch.rand(50, 3, 8, 8)
    out = rand_augment(x, torch.Generator().manual_seed(3), num_ops=3, p=1.0, ops=("identity", "solarize"))
    choice, _, _ = _signs(3, 50, num_ops=3, pool=2)
    odd = (choice == 1).sum(1) % 2 == 1  # solarize at full magnitude inverts: an odd count inverts
    expected = torch.where(odd.view(-1, 1, 1, 1), 1 - x, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert 0 < int(odd.sum()) < 50


@pytest.mark.parametrize("name,reference", [
    ("brightness", TF.adjust_brightness),
    ("color", TF.adjust_saturation),
    ("contrast", TF.adjust_contrast),
    ("sharpness", TF.adjust_sharpness),
])
def test_enhance_operations_match_torchvision_with_each_samples_factor(name, reference):
    x = torch.rand(12, 3, 9, 9)
    out = _one(x, name, seed=4)
    _, _, neg = _signs(4, 12)
    for i in range(12):  # the reference, one sample at a time: factor 1 - 0.95 or 1 + 0.95 at full magnitude
        factor = 0.05 if neg[i, 0] else 1.95
        torch.testing.assert_close(out[i], reference(x[i], factor), rtol=0, atol=2e-6)
    assert 0 < int(neg.sum()) < 12


def test_magnitude_scales_the_enhance_factor():
    x = torch.rand(6, 3, 5, 5) * 0.5
    out = _one(x, "brightness", seed=2, magnitude=0.5)  # v = 0.05 + 0.9 * 0.5 = 0.5
    _, _, neg = _signs(2, 6)
    factor = torch.where(neg[:, 0], 0.5, 1.5).view(-1, 1, 1, 1)
    torch.testing.assert_close(out, (x * factor).clamp(0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,reference", [("equalize", TF.equalize), ("autocontrast", TF.autocontrast)])
def test_histogram_operations_match_torchvision(name, reference):
    x = torch.rand(5, 3, 8, 8) * 0.6 + 0.2
    torch.testing.assert_close(_one(x, name), reference(x), rtol=0, atol=1e-6)


def test_solarize_posterize_identity_at_full_magnitude():
    x = torch.rand(4, 3, 6, 6)
    torch.testing.assert_close(_one(x, "solarize"), 1 - x, rtol=0, atol=0)  # threshold 0: every value inverted
    assert torch.equal(_one(x, "posterize"), x)  # 8 bits at full magnitude, as the authors' range (4, 8)
    assert torch.equal(_one(x, "posterize", magnitude=0.0), TF.posterize(x, 4))
    assert torch.equal(_one(x, "identity"), x)


def test_translate_shifts_by_whole_pixels_and_fills_with_grey():
    x = torch.rand(6, 3, 10, 10)  # 0.3 * 10 = 3 px
    for name, dim in (("translate_x", 3), ("translate_y", 2)):
        out = _one(x, name, seed=7)
        _, _, neg = _signs(7, 6)
        for i in range(6):  # output pixel p reads input pixel p + t, t = +3 px (-3 px with the negative sign)
            shift = 3 if neg[i, 0] else -3
            expected = torch.roll(x[i], shift, dims=dim - 1)
            index = torch.arange(10)
            uncovered = (index < shift) | (index >= 10 + shift)
            mask = uncovered.view(1, 1, 10) if dim == 3 else uncovered.view(1, 10, 1)
            expected = torch.where(mask, torch.full_like(expected, GEOMETRIC_FILL), expected)
            torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)


def test_shear_is_about_the_top_left_pixel():
    x = torch.rand(8, 3, 20, 20)
    out = _one(x, "shear_x", seed=1)
    _, _, neg = _signs(1, 8)
    torch.testing.assert_close(out[:, :, 0], x[:, :, 0], rtol=0, atol=1e-5)  # row 0 does not move
    for i in range(8):  # row 10 moves by 0.3 * 10 = 3 px: output column c reads input column c +- 3
        s = -3 if neg[i, 0] else 3
        cols = torch.arange(4, 16)
        torch.testing.assert_close(out[i, :, 10, cols], x[i, :, 10, cols + s], rtol=0, atol=1e-5)


def test_rotate_agrees_with_torchvision():
    x = torch.rand(6, 3, 16, 16)
    out = _one(x, "rotate", seed=9)
    _, _, neg = _signs(9, 6)
    for i in range(6):
        angle = -30.0 if neg[i, 0] else 30.0  # the sign convention is free: both signs are drawn
        best = max((TF.rotate(x[i], a, interpolation=TF.InterpolationMode.NEAREST, fill=GEOMETRIC_FILL)
                    - out[i]).abs().lt(1e-6).float().mean() for a in (angle, -angle))
        assert best > 0.97, best  # nearest-neighbour rounding may differ on a few pixels


def test_cutout_fills_one_square_per_fired_sample():
    x = torch.rand(200, 3, 16, 16)
    out = cutout(x, torch.Generator().manual_seed(0), size=4)
    changed = (out != x).any(1)  # [B, H, W]
    counts = changed.flatten(1).sum(1)
    fired = counts > 0
    assert 70 < int(fired.sum()) < 130  # p = 0.5
    assert int(counts.max()) <= 16
    rows, cols = changed.any(2), changed.any(1)
    assert torch.equal(counts, rows.sum(1) * cols.sum(1))  # a rectangle, clipped at the border
    fill = torch.tensor(CUTOUT_FILL).view(1, 3, 1)
    torch.testing.assert_close(out.permute(0, 2, 3, 1)[changed], fill.view(1, 3).expand(int(counts.sum()), 3))


def test_sizes_scale_with_the_image():
    assert (crop_padding(32), crop_padding(16), crop_padding(8)) == (4, 2, 1)
    assert (cutout_size(32), cutout_size(16), cutout_size(64)) == (4, 2, 8)
    assert len(RAND_AUGMENT_OPS) == 14


def test_rand_augment_bad_input():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="num_ops"):
        rand_augment(x, num_ops=0)
    with pytest.raises(ValueError, match="magnitude"):
        rand_augment(x, magnitude=1.5)
    with pytest.raises(ValueError, match="p must"):
        rand_augment(x, p=-0.1)
    with pytest.raises(ValueError, match="ops"):
        rand_augment(x, ops=("rotate", "warp"))
    with pytest.raises(TypeError, match="x"):
        rand_augment(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels"):
        rand_augment(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match="size"):
        cutout(x, size=0)
    with pytest.raises(ValueError, match="fill"):
        cutout(x, fill=(0.5, 0.5))
