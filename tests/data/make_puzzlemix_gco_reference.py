"""Make tests/data/puzzlemix_gco_reference.npz: PuzzleMix graph-cut instances
solved by GCO's alpha-beta swap, the solver of the original PuzzleMix.

Runs only where gco-wrapper is installed, which needs Python <= 3.11 and
NumPy < 1.24 (gco-wrapper 3.0.9 names ``np.int``), e.g. in a scratch venv::

    python3.11 -m venv /tmp/gco && /tmp/gco/bin/pip install gco-wrapper "numpy<1.24"
    /tmp/gco/bin/python tests/data/make_puzzlemix_gco_reference.py

The rest of this file is plain NumPy (no gco, no torch): the tests import
:func:`original_energy` as an independent, per-pair reference for
``mixviz.mixing.puzzlemix._energy``.

Each instance is one image pair: two random smooth textures (3 x 32 x 32,
quantised to 1/255), two saliency maps (a few Gaussian bumps on a small
floor), a ratio ``lam`` and a block grid ``n``.  Its energy is built as the
original does for CIFAR (beta 1.2, gamma 0.5, eta 0.2, neighbourhood 4):
block saliency normalised to sum 1, colour-jump penalties split into unary
and edge parts, the lam prior over the labels, all scaled by ``1000 n**2`` and
truncated to int32.  GCO is called exactly as the original calls it:
``cut_grid_graph(unary, V, edges_down, edges_right, algorithm="swap")`` with
the float32 label cost ``V[i, j] = (i - j)**2 / (K - 1)**2`` (which puts
pyGCO into its float mode: unary x 1e5, edge weights x 1e3, V x 1e2, all
cast to C int; the proportions stay those of the integer energy).
Instances whose terms would overflow that cast are drawn again (they are
counted and printed).

Stored per n (keys suffixed ``_n<n>`` for n in {2, 4, 8, 16}, K = 3; and
``_k2`` for a few two-label instances at n = 4): ``unary`` int32
[N, n, n, K], ``down`` int32 [N, n-1, n], ``right`` int32 [N, n, n-1],
``gco_labels`` int8 [N, n, n], ``lam`` float64 [N], plus ``seconds``: GCO's
time per instance (serial, one CPU thread of a shared machine).  The energy
of labels ``L`` is ``sum unary[L] + sum w (L - L')**2 / (K - 1)**2``; tests
compare ``(K - 1)**2`` times it, an integer.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "puzzlemix_gco_reference.npz"
COUNTS = {2: 80, 4: 90, 8: 90, 16: 40}  # three-label instances per block grid (300)
TWO_LABEL = 40  # two-label instances at n = 4
SIZE = 32
INT_MAX = 2 ** 31 - 1


def _pool(a: np.ndarray, s: int) -> np.ndarray:
    """Average over s x s pixel squares of the last two axes."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // s, s, w // s, s).mean(axis=(-3, -1))


def _jumps(first: np.ndarray, second: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour jump at each block boundary when the upper (left) block is
    taken from ``first`` and the lower (right) one from ``second``: pooled
    images [3, n k, n k]; the jump between the last pooled row of block row i
    and the first of block row i + 1, averaged over channels and the k pooled
    columns of the block column (likewise for columns)."""
    down = np.zeros((n - 1, n))
    right = np.zeros((n, n - 1))
    for i in range(n - 1):
        r = (i + 1) * k - 1
        for j in range(n):
            cols = slice(j * k, (j + 1) * k)
            down[i, j] = np.abs(first[:, r, cols] - second[:, r + 1, cols]).mean()
    for i in range(n):
        rows = slice(i * k, (i + 1) * k)
        for j in range(n - 1):
            c = (j + 1) * k - 1
            right[i, j] = np.abs(first[:, rows, c] - second[:, rows, c + 1]).mean()
    return down, right


def original_energy(img_a: np.ndarray, img_b: np.ndarray, sal_a: np.ndarray, sal_b: np.ndarray, lam: float, n: int,
                    beta: float = 1.2, gamma: float = 0.5, eta: float = 0.2, neigh_size: int = 4,
                    n_labels: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The original's float energy for one pair (sample a, partner b): unary
    [n, n, K] (label L gives sample a the share 1 - L / (K - 1)), edge
    weights down [n-1, n] and right [n, n-1].  Images [3, S, S] in [0, 1],
    saliency maps [S, S], S a multiple of n.  float64 throughout."""
    size = img_a.shape[-1]
    block = size // n
    nu = min(neigh_size, block)
    k = block // nu
    u_a, u_b = _pool(sal_a, block), _pool(sal_b, block)
    u_a, u_b = u_a / u_a.sum(), u_b / u_b.sum()
    pooled = {"a": _pool(img_a, nu), "b": _pool(img_b, nu)}
    smooth = beta / n / 16
    jump = {(s, t): _jumps(pooled[s], pooled[t], n, k) for s in "ab" for t in "ab"}
    show_a, show_b = u_b.copy(), u_a.copy()  # showing a hides b's saliency, and vice versa
    weights = []
    for axis in (0, 1):
        e = {st: smooth * gamma * jump[st][axis] for st in jump}
        head = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        tail = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        show_a[head] += (e["a", "a"] + e["a", "b"]) / 2  # the upper / left block shows a
        show_b[head] += (e["b", "a"] + e["b", "b"]) / 2
        show_a[tail] += (e["a", "a"] + e["b", "a"]) / 2  # the lower / right block shows a
        show_b[tail] += (e["a", "b"] + e["b", "b"]) / 2
        weights.append((e["a", "b"] + e["b", "a"] - e["a", "a"] - e["b", "b"]) / 2 + smooth)
    prior = [-eta / n ** 2 * math.log(math.comb(n_labels - 1, j) * lam ** (n_labels - 1 - j) * (1 - lam) ** j + 1e-8)
             for j in range(n_labels)]
    unary = np.stack([(1 - j / (n_labels - 1)) * show_a + j / (n_labels - 1) * show_b + prior[j]
                      for j in range(n_labels)], axis=-1)
    return unary, weights[0], weights[1]


def integer_terms(unary: np.ndarray, down: np.ndarray, right: np.ndarray,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The original's integer scaling: x 1000 n**2, truncated to int32."""
    large = 1000 * n ** 2
    return tuple((large * t).astype(np.int32) for t in (unary, down, right))


def scaled_energy(labels: np.ndarray, unary: np.ndarray, down: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``(K - 1)**2 E(labels)`` for integer terms, exactly (int64), batched:
    labels [N, n, n], unary [N, n, n, K], down [N, n-1, n], right [N, n, n-1]."""
    k = unary.shape[-1]
    labels = labels.astype(np.int64)
    data = np.take_along_axis(unary.astype(np.int64), labels[..., None], -1)[..., 0].sum((1, 2))
    dv = (labels[:, 1:] - labels[:, :-1]) ** 2
    dh = (labels[:, :, 1:] - labels[:, :, :-1]) ** 2
    return (k - 1) ** 2 * data + (down.astype(np.int64) * dv).sum((1, 2)) + (right.astype(np.int64) * dh).sum((1, 2))


def random_pair(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Two smooth textures in [0, 1] (quantised to 1/255) and two saliency maps."""
    images = []
    for _ in range(2):
        cells = int(rng.choice([2, 4, 8]))
        coarse = rng.random((3, cells, cells))
        img = np.kron(coarse, np.ones((SIZE // cells, SIZE // cells))) + 0.15 * rng.standard_normal((3, SIZE, SIZE))
        images.append(np.round(np.clip(img, 0, 1) * 255) / 255)
    maps = []
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for _ in range(2):
        sal = 0.05 * rng.random((SIZE, SIZE))
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.random(2) * SIZE
            width = 2 + 6 * rng.random()
            sal += rng.random() * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width ** 2))
        maps.append(sal)
    return images[0], images[1], maps[0], maps[1]


def _fits_gco(unary: np.ndarray, down: np.ndarray, right: np.ndarray) -> bool:
    """pyGCO's float mode multiplies unaries by 1e5 and edge weights by 1e3
    (then by the label cost x 1e2) before casting to C int."""
    return max(np.abs(unary).max() * 1e5, max(down.max(initial=0), right.max(initial=0)) * 1e5) < INT_MAX


def main() -> None:
    try:
        import gco
    except ImportError:
        sys.exit("gco-wrapper is not installed here; see the top of this file for a scratch venv that has it")
    rng = np.random.default_rng(20261201)
    arrays: dict[str, np.ndarray] = {}
    redrawn = 0
    plan = [(n, 3, count, f"_n{n}") for n, count in COUNTS.items()] + [(4, 2, TWO_LABEL, "_k2")]
    for n, k, count, suffix in plan:
        cost = ((np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2 / (k - 1) ** 2).astype(np.float32)
        rows: dict[str, list] = {key: [] for key in ("unary", "down", "right", "gco_labels", "lam", "seconds")}
        while len(rows["lam"]) < count:
            img_a, img_b, sal_a, sal_b = random_pair(rng)
            lam = float(rng.choice([rng.random(), rng.choice([0.02, 0.98])], p=[0.9, 0.1]))
            terms = integer_terms(*original_energy(img_a, img_b, sal_a, sal_b, lam, n, n_labels=k), n)
            if not _fits_gco(*terms):
                redrawn += 1
                continue
            t0 = time.perf_counter()
            labels = gco.cut_grid_graph(terms[0], cost, terms[1], terms[2], n_iter=-1, algorithm="swap")
            rows["seconds"].append(time.perf_counter() - t0)
            for key, value in zip(("unary", "down", "right"), terms):
                rows[key].append(value)
            rows["gco_labels"].append(np.asarray(labels, dtype=np.int8).reshape(n, n))
            rows["lam"].append(lam)
        for key, values in rows.items():
            arrays[key + suffix] = np.stack(values) if key not in ("lam", "seconds") else np.asarray(values)
        ms = 1e3 * np.mean(rows["seconds"])
        print(f"n={n:2d} K={k}: {count} instances, GCO swap {ms:.3f} ms per pair ({128 * ms:.1f} ms per 128 pairs)")
    print(f"instances redrawn because pyGCO's int cast would overflow: {redrawn}")
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
