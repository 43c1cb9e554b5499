"""``clutter``: coloured objects pasted on patches of real photographs, with
the object masks kept -- the set on which label mismatch can be measured.

Every image is made in four vectorized steps (no loop over samples):

1. **Background**: a square patch cut from one of the two photos that ship
   with scikit-learn (``load_sample_images``: ``china.jpg``, ``flower.jpg``,
   halved to 214x320 with antialiasing), side ``p ~ U(patch)`` photo pixels,
   resampled to ``size x size`` (bilinear), mirrored with probability 1/2.
   Each photo is cut into a 2x4 grid of cells (107x80 pixels); the four
   cells of :data:`TEST_CELLS` hold the test backgrounds and the twelve
   others the train backgrounds.  The test cells were chosen (two per photo,
   one per row) so that both splits hold sky, roofs, dark leaves and petals:
   the mean cell colour and contrast of the two splits differ by < 0.02.  A patch lies inside one cell
   with a 1-pixel margin, so bilinear sampling never reads across a cell's
   edge: the two splits never share a background pixel.
2. **Object shape**: a template -- a real handwritten digit scan (8x8, from
   the digits *train* split for train images and the *test* split for test
   images) or one of ten geometric shapes (32x32) -- stretched to a box of side
   ``s = scale * size`` with aspect ``a`` (``log a ~ U(-log r, log r)``,
   ``r = aspect``), width ``s sqrt(a)``, height ``s / sqrt(a)``, at a uniform
   position fully inside the image.  The template is resampled bilinearly and
   thresholded: ``mask = [alpha > 0.5]`` in {0, 1}.
3. **Colour**: a random RGB colour ``c0 ~ U(0, 1)^3``, shifted to the
   luminance ``L_t = L(m) +- d`` where ``m`` is the mean background colour
   under the mask, ``d ~ U(contrast)``, the sign pointing to the side of
   [0, 1] with more room, ``L = 0.299 R + 0.587 G + 0.114 B``:
   ``c = clip(c0 + L_t - L(c0), 0, 1)``.
4. **Paste**: ``image = mask * c + (1 - mask) * background`` -- a hard paste,
   so ``masks`` is exactly the set of pixels that come from the object.

Classes: ``objects="digits"`` gives the ten digits ``"0"..."9"``,
``"shapes"`` the ten :data:`SHAPES`, ``"both"`` twenty classes, the digits
(labels 0-9) then the shapes (labels 10-19), each drawn as in its own set.
Labels are balanced (``n // K`` or one more per class, ``K`` classes) and the
whole set is a deterministic function of the arguments.  Results are kept in a small
in-process cache (nothing is written to disk); callers get fresh copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from mixviz._extras import require
from mixviz._validation import check_choice, check_positive
from mixviz.data.base import SPLITS, InMemoryDataset, channel_stats, check_seed, split_seed

__all__ = ["clutter", "generate", "ClutterParts", "shape_templates", "SHAPES", "OBJECTS",
           "GRID", "TEST_CELLS", "SCALE", "CONTRAST", "mask_area_stats"]

OBJECTS = ("digits", "shapes", "both")
SHAPES = ("disk", "ring", "square", "frame", "triangle", "plus", "cross", "diamond", "bar", "tee")
GRID = (2, 4)             # rows x columns of background cells per photo
TEST_CELLS = ((0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 2))   # (photo, row, column) of the test cells
_LUMA = (0.299, 0.587, 0.114)
SCALE = (0.35, 0.75)      # default range of the object box side / image side
CONTRAST = (0.15, 0.5)    # default range of the object/background luminance step


@dataclass(eq=False)
class ClutterParts:
    """Everything :func:`generate` made, for tests and pictures.

    ``images = masks * colours[:, :, None, None] + (1 - masks) * backgrounds``.
    ``boxes`` holds ``(x0, y0, w, h)`` of the object box in pixels.
    """

    images: torch.Tensor       # [N, 3, S, S] float32 in [0, 1]
    masks: torch.Tensor        # [N, 1, S, S] float32 in {0, 1}
    labels: torch.Tensor       # [N] int64
    backgrounds: torch.Tensor  # [N, 3, S, S] float32 in [0, 1]
    colours: torch.Tensor      # [N, 3] float32 in [0, 1]
    boxes: torch.Tensor        # [N, 4] float32

    def clone(self) -> "ClutterParts":
        return ClutterParts(*(t.clone() for t in (self.images, self.masks, self.labels,
                                                  self.backgrounds, self.colours, self.boxes)))


# --------------------------------------------------------------------------- sources

@lru_cache(maxsize=1)
def _photos() -> torch.Tensor:
    """The scikit-learn sample photos as float32 [2, 3, 214, 320] in [0, 1]."""
    require("sklearn", "the offline data sets")
    from sklearn.datasets import load_sample_images

    photos = torch.stack([torch.tensor(im) for im in load_sample_images().images])  # [2, H, W, 3]
    photos = photos.permute(0, 3, 1, 2).float().div_(255.0)
    h, w = photos.shape[-2:]
    return F.interpolate(photos, size=(math.ceil(h / 2), w // 2), mode="bilinear",
                         antialias=True, align_corners=False).clamp_(0.0, 1.0)


def shape_templates(resolution: int = 32) -> torch.Tensor:
    """The ten shapes of :data:`SHAPES` as float32 [10, R, R] in {0, 1},
    drawn on the square [-1, 1]^2 (``u`` to the right, ``v`` downwards)."""
    t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    v, u = torch.meshgrid(t, t, indexing="ij")
    au, av = u.abs(), v.abs()
    r2 = u.square() + v.square()
    box = torch.maximum(au, av)
    shapes = [
        r2 <= 0.85 ** 2,                                                   # disk
        (r2 <= 0.9 ** 2) & (r2 >= 0.5 ** 2),                               # ring
        box <= 0.75,                                                       # square
        (box <= 0.85) & (box >= 0.5),                                      # frame
        (v >= -0.8) & (v <= 0.8) & (au <= 0.9 * (v + 0.8) / 1.6),          # triangle, apex up
        ((au <= 0.25) & (av <= 0.9)) | ((av <= 0.25) & (au <= 0.9)),       # plus
        (((u - v).abs() <= 0.35) | ((u + v).abs() <= 0.35)) & (box <= 0.9),  # cross
        au + av <= 0.9,                                                    # diamond
        (av <= 0.3) & (au <= 0.9),                                         # bar (horizontal)
        (((v + 0.6).abs() <= 0.25) & (au <= 0.9)) | ((au <= 0.25) & (av <= 0.9)),  # tee
    ]
    return torch.stack(shapes).float()


def _num_classes(objects: str) -> int:
    return 20 if objects == "both" else 10


def _templates(objects: str, split: str, labels: torch.Tensor,
               g: torch.Generator) -> torch.Tensor | list[tuple[torch.Tensor, torch.Tensor]]:
    """One template [N, 1, T, T] per sample: a random scan of the sample's
    class from the digits ``split``, or the class's shape.  For ``"both"``
    the digits (8x8) and shapes (32x32) differ in size: then a list of
    ``(rows, templates)`` groups, digits first."""
    if objects == "shapes":
        return shape_templates()[labels].unsqueeze(1)
    if objects == "both":
        digit = labels < 10
        rows_d, rows_s = digit.nonzero().squeeze(1), (~digit).nonzero().squeeze(1)
        return [(rows_d, _templates("digits", split, labels[rows_d], g)),
                (rows_s, shape_templates()[labels[rows_s] - 10].unsqueeze(1))]
    from mixviz.data.digits import glyphs

    pool, pool_labels = glyphs(split)
    order = torch.argsort(pool_labels, stable=True)
    counts = torch.bincount(pool_labels, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    pick = starts[labels] + (torch.rand(labels.shape[0], generator=g) * counts[labels]).long()
    return pool[order[pick]].unsqueeze(1)


# --------------------------------------------------------------------------- geometry

def _pixel_centres(size: int) -> torch.Tensor:
    return torch.arange(size, dtype=torch.float32) + 0.5


def _backgrounds(n: int, split: str, size: int, patch: tuple[float, float],
                 g: torch.Generator) -> torch.Tensor:
    """[N, 3, S, S] patches from the split's cells of the photos (step 1)."""
    photos = _photos()
    h = photos.shape[-2]
    canvas = torch.cat(list(photos), dim=-1).unsqueeze(0)     # [1, 3, H, k*W]
    corners, ch, cw = _cells(split)
    side = patch[0] + (patch[1] - patch[0]) * torch.rand(n, generator=g)
    cell = torch.randint(corners.shape[0], (n,), generator=g)
    # a 1-pixel margin keeps bilinear sampling from reading across a cell's edge
    x0 = corners[cell, 0] + 1 + (cw - 2 - side) * torch.rand(n, generator=g)
    y0 = corners[cell, 1] + 1 + (ch - 2 - side) * torch.rand(n, generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    c = _pixel_centres(size) / size                            # [S], in (0, 1)
    cx = torch.where(flip[:, None], 1 - c, c)                  # [N, S]
    xs = x0[:, None] + side[:, None] * cx                      # photo pixel coordinates
    ys = y0[:, None] + side[:, None] * c
    gx = 2 * xs / canvas.shape[-1] - 1                         # align_corners=False normalisation
    gy = 2 * ys / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [N, S, S, 2]
    out = F.grid_sample(canvas, grid.reshape(1, n * size, size, 2), mode="bilinear",
                        padding_mode="border", align_corners=False)               # [1, 3, N*S, S]
    return out.reshape(3, n, size, size).transpose(0, 1).clamp(0.0, 1.0).contiguous()


def _cells(split: str) -> tuple[torch.Tensor, int, int]:
    """Top-left corners [M, 2] (x, y, in pixels of the side-by-side photos)
    of the split's background cells, and the cell height and width."""
    k, _, h, w = _photos().shape
    rows, cols = GRID
    ch, cw = h // rows, w // cols
    cells = [(p, r, c) for p in range(k) for r in range(rows) for c in range(cols)]
    chosen = [(p, r, c) for p, r, c in cells if ((p, r, c) in TEST_CELLS) == (split == "test")]
    corners = torch.tensor([[p * w + c * cw, r * ch] for p, r, c in chosen], dtype=torch.float32)
    return corners, ch, cw


def _object_masks(templates: torch.Tensor | list[tuple[torch.Tensor, torch.Tensor]], size: int,
                  scale: tuple[float, float], aspect: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks [N, 1, S, S] in {0, 1} and boxes [N, 4] (step 2); ``templates``
    as :func:`_templates` gives them (groups of rows are sampled group by group)."""
    groups = [(None, templates)] if isinstance(templates, torch.Tensor) else templates
    n = sum(t.shape[0] for _, t in groups)
    s = size * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=g))
    log_a = math.log(aspect) * (2 * torch.rand(n, generator=g) - 1)
    w = (s * torch.exp(log_a / 2)).clamp(max=size)
    h = (s * torch.exp(-log_a / 2)).clamp(max=size)
    x0 = (size - w) * torch.rand(n, generator=g)
    y0 = (size - h) * torch.rand(n, generator=g)
    c = _pixel_centres(size)
    gx = 2 * (c[None, :] - x0[:, None]) / w[:, None] - 1      # [-1, 1] across the box
    gy = 2 * (c[None, :] - y0[:, None]) / h[:, None] - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    boxes = torch.stack((x0, y0, w, h), dim=1)
    if groups[0][0] is None:
        alpha = F.grid_sample(templates, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (alpha > 0.5).float(), boxes
    masks = torch.empty(n, 1, size, size)
    for rows, group in groups:  # one resampling per template size (two groups), not a loop over samples
        alpha = F.grid_sample(group, grid[rows], mode="bilinear", padding_mode="zeros", align_corners=False)
        masks[rows] = (alpha > 0.5).float()
    return masks, boxes


def _colours(backgrounds: torch.Tensor, masks: torch.Tensor, contrast: tuple[float, float],
             g: torch.Generator) -> torch.Tensor:
    """Object colours [N, 3] whose luminance differs from the background under
    the object by ``d ~ U(contrast)`` where [0, 1] leaves room (step 3)."""
    n = backgrounds.shape[0]
    luma = torch.tensor(_LUMA)
    area = masks.sum((1, 2, 3)).clamp(min=1.0)
    under = (backgrounds * masks).sum((2, 3)) / area[:, None]   # [N, 3]
    l_bg = under @ luma
    d = contrast[0] + (contrast[1] - contrast[0]) * torch.rand(n, generator=g)
    target = torch.where(l_bg < 0.5, l_bg + d, l_bg - d).clamp(0.0, 1.0)
    c0 = torch.rand(n, 3, generator=g)
    return (c0 + (target - c0 @ luma)[:, None]).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- public

def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}")
    return a, b


@lru_cache(maxsize=4)
def _generate_cached(n: int, split: str, seed: int, size: int, objects: str, scale: tuple[float, float],
                     aspect: float, contrast: tuple[float, float], patch: tuple[float, float]
                     ) -> tuple[ClutterParts, tuple[float, ...], tuple[float, ...]]:
    """The parts and the per-channel mean/std of the images (never mutate:
    shared by every caller with the same arguments)."""
    g = torch.Generator().manual_seed(split_seed(seed, split))
    labels = (torch.arange(n) % _num_classes(objects))[torch.randperm(n, generator=g)]
    backgrounds = _backgrounds(n, split, size, patch, g)
    masks, boxes = _object_masks(_templates(objects, split, labels, g), size, scale, aspect, g)
    colours = _colours(backgrounds, masks, contrast, g)
    images = torch.where(masks.bool(), colours[:, :, None, None].expand_as(backgrounds), backgrounds)
    parts = ClutterParts(images.contiguous(), masks, labels, backgrounds, colours, boxes)
    mean, std = channel_stats(parts.images)
    return parts, mean, std


def _cached(n: int, split: str, seed: int, size: int, objects: str, scale: tuple[float, float],
            aspect: float, contrast: tuple[float, float], patch: tuple[float, float]
            ) -> tuple[ClutterParts, tuple[float, ...], tuple[float, ...]]:
    """Check the arguments of :func:`generate`, then look them up in the cache."""
    check_positive("n", n, integer=True)
    check_choice("split", split, SPLITS)
    check_seed(seed)
    check_positive("size", size, integer=True)
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    check_choice("objects", objects, OBJECTS)
    scale = _check_range("scale", scale, 1e-3, 1.0)
    check_positive("aspect", aspect)
    if aspect < 1:
        raise ValueError(f"aspect must be >= 1, got {aspect}")
    contrast = _check_range("contrast", contrast, 0.0, 1.0)
    _, ch, cw = _cells(split)
    patch = _check_range("patch", patch, 1.0, min(ch, cw) - 2)
    return _generate_cached(n, split, seed, size, objects, scale, float(aspect), contrast, patch)


def generate(n: int, split: str = "train", *, seed: int = 0, size: int = 32, objects: str = "digits",
             scale: tuple[float, float] = SCALE, aspect: float = 1.25,
             contrast: tuple[float, float] = CONTRAST,
             patch: tuple[float, float] = (32.0, 64.0)) -> ClutterParts:
    """Make ``n`` clutter images of ``split`` (see the module docstring).

    Args:
        n: number of images.
        split: ``"train"`` or ``"test"``: chooses the glyph pool, the photo
            region and the random stream (``split_seed(seed, split)``).
        seed: the seed; the same arguments give the same images.
        size: image side in pixels (>= 8).
        objects: ``"digits"`` (real handwritten scans), ``"shapes"`` or
            ``"both"`` (20 classes: the digits, then the shapes).
        scale: range of the object box side, as a fraction of ``size``.
        aspect: the box's width/height ratio lies in [1/aspect, aspect].
        contrast: range of the luminance step between object and background.
        patch: range of the background patch side, in pixels of the halved
            photos (214x320); at most 78 so that a patch fits in a cell.
    """
    parts, _, _ = _cached(n, split, seed, size, objects, scale, aspect, contrast, patch)
    return parts.clone()


def mask_area_stats(masks: torch.Tensor) -> dict[str, float]:
    """Share of the image covered by the object, ``mask.mean((1, 2, 3))``:
    mean, min, quartiles, max, and the share of images whose object covers
    less than a quarter and less than half of the image."""
    area = masks.to(torch.float64).mean((1, 2, 3))
    q = torch.quantile(area, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)).tolist()
    return {"mean": float(area.mean()), "min": q[0], "q25": q[1], "median": q[2], "q75": q[3], "max": q[4],
            "frac_below_0.25": float((area < 0.25).double().mean()),
            "frac_below_0.5": float((area < 0.5).double().mean())}


def clutter(split: str = "train", *, n_train: int = 5000, n_test: int = 1000, seed: int = 0, size: int = 32,
            objects: str = "digits", scale: tuple[float, float] = SCALE, aspect: float = 1.25,
            contrast: tuple[float, float] = CONTRAST,
            patch: tuple[float, float] = (32.0, 64.0)) -> InMemoryDataset:
    """The clutter set's ``split``: ``n_train`` or ``n_test`` float32 RGB
    images ``[N, 3, size, size]`` in [0, 1] with object ``masks``; see
    :func:`generate` for the other arguments.  ``augment`` is
    ``"crop_flip"``; classes are the digits ``"0"..."9"``, :data:`SHAPES`, or
    both (``objects="both"``: 20 classes, the digits first)."""
    check_choice("split", split, SPLITS)
    check_positive("n_train", n_train, integer=True)
    check_positive("n_test", n_test, integer=True)
    n = n_train if split == "train" else n_test
    parts, mean, std = _cached(n, split, seed, size, objects, scale, aspect, contrast, patch)
    digits = [str(d) for d in range(10)]
    classes = {"digits": digits, "shapes": list(SHAPES), "both": digits + list(SHAPES)}[objects]
    meta = {"seed": seed, "size": size, "objects": objects, "scale": tuple(scale), "aspect": aspect,
            "contrast": tuple(contrast), "patch": tuple(patch)}
    return InMemoryDataset(images=parts.images.clone(), labels=parts.labels.clone(), classes=classes,
                           name="clutter", split=split, masks=parts.masks.clone(), mean=mean, std=std,
                           augment="crop_flip", meta=meta)
