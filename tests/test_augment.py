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
