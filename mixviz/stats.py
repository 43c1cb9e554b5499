"""Seeds -> a mean and its 95 % interval; two methods -> their paired difference.

Every comparison mixviz prints rests on a few seeds.  The interval of a mean
of ``n`` per-seed values ``x_1..x_n`` is Student's t interval

    mean ± t_{(1 + c) / 2, n - 1} * s / sqrt(n),     s = the sample standard deviation,

at confidence ``c`` (0.95).  Two methods trained with the same seeds share
their data order, initialisation and mixing draws, so they are compared by
the per-seed differences ``d_s = x_s(method) - x_s(reference)`` and the t
interval of their mean (a paired comparison: the seed-to-seed noise that both
share cancels).  A difference is *claimed* only when its interval excludes 0;
otherwise the honest reading is "no measurable difference"
(:func:`verdict`).  With one seed there is no interval (NaN half-width).

>>> m = mean_ci([0.90, 0.92, 0.91])
>>> round(m.mean, 3), round(m.half, 4), m.n
(0.91, 0.0248, 3)
>>> d = paired_ci({0: 0.95, 1: 0.96, 2: 0.94}, {0: 0.90, 1: 0.92, 2: 0.91})
>>> round(d.mean, 3), d.excludes_zero
(0.04, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mixviz._extras import require

require("pandas")  # the 'analysis' extra: an ImportError here names the pip install line
import pandas as pd  # noqa: E402

__all__ = ["ILLUSTRATION", "Interval", "SeedCount", "sd_from_interval", "seeds_for_stable_verdict", "mean_ci", "paired_ci", "verdict", "t_quantile", "summarize_groups", "paired_table",
           "format_ci", "CONFIDENCE"]

CONFIDENCE = 0.95
#: What a method on one seed is, in every table and figure: no interval, no claim, never ranked.
ILLUSTRATION = "1 seed: illustration"


@dataclass(frozen=True)
class Interval:
    """A mean with the half-width of its interval: ``[mean - half, mean + half]``."""

    mean: float
    half: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (NaN: False)."""
        return bool(not math.isnan(self.half) and (self.low > 0 or self.high < 0))


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")


def t_quantile(confidence: float, dof: int) -> float:
    """The two-sided Student-t critical value ``t_{(1 + confidence) / 2, dof}``."""
    require("scipy", "the t interval")
    from scipy import stats

    _check_confidence(confidence)
    if isinstance(dof, bool) or not isinstance(dof, (int, np.integer)) or dof < 1:
        raise ValueError(f"dof must be an int >= 1, got {dof!r}")
    return float(stats.t.ppf((1.0 + confidence) / 2.0, dof))


def _values(name: str, values: Any) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Iterable, np.ndarray, pd.Series)):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    arr = pd.to_numeric(pd.Series(list(values), dtype="float64"), errors="raise").to_numpy()
    return arr[~np.isnan(arr)]


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` (NaNs dropped) with its Student-t interval.

    Raises ValueError when no value is left; one value gives a NaN half-width.
    """
    _check_confidence(confidence)
    x = _values("values", values)
    if x.size == 0:
        raise ValueError("values must hold at least one number (NaNs are dropped)")
    if x.size == 1:
        return Interval(float(x[0]), math.nan, 1, confidence)
    half = t_quantile(confidence, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(float(x.mean()), half, int(x.size), confidence)


def paired_ci(treatment: Mapping[Any, float] | pd.Series, reference: Mapping[Any, float] | pd.Series,
              confidence: float = CONFIDENCE) -> Interval:
    """Mean of the per-seed differences ``treatment[s] - reference[s]`` over the
    seeds ``s`` both have (NaNs dropped), with its t interval.

    ``treatment`` and ``reference`` map a seed to a value (a dict or a Series
    indexed by seed).  Raises ValueError when they share no seed.
    """
    for name, value in (("treatment", treatment), ("reference", reference)):
        if not isinstance(value, (Mapping, pd.Series)):
            raise TypeError(f"{name} must map seeds to values (a dict or a pandas Series), got {type(value).__name__}")
    a, b = pd.Series(dict(treatment), dtype="float64"), pd.Series(dict(reference), dtype="float64")
    common = a.index.intersection(b.index)
    diff = (a[common] - b[common]).dropna()
    if diff.empty:
        raise ValueError(f"treatment and reference share no seed with values (seeds {sorted(a.index)} and "
                         f"{sorted(b.index)})")
    return mean_ci(diff.to_numpy(), confidence)


def verdict(interval: Interval, higher: str = "higher", lower: str = "lower") -> str:
    """``higher``/``lower`` when the interval excludes 0 on that side, else
    ``"no measurable difference"`` (also with one seed: no interval)."""
    if not isinstance(interval, Interval):
        raise TypeError(f"interval must be an Interval, got {type(interval).__name__}")
    if not interval.excludes_zero:
        return "no measurable difference"
    return higher if interval.mean > 0 else lower


def format_ci(interval: Interval, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
    """``"91.0 ± 2.5"`` (mean ± half-width, times ``scale``); the half-width is
    left out when there is none.  ``signed`` writes differences as ``+1.2`` /
    ``−1.2`` (a true minus sign) and marks with ``*`` those whose interval
    excludes 0."""
    mean, half = interval.mean * scale, interval.half * scale
    if signed:
        text = f"{round(mean, digits) + 0.0:+.{digits}f}".replace("-", "−")
    else:
        text = f"{mean:.{digits}f}"
    if not math.isnan(half):
        text += f" ± {half:.{digits}f}"
        if signed and interval.excludes_zero:
            text += " *"
    return text


def _check_frame(name: str, frame: Any, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} must have the column(s) {', '.join(missing)}; has {', '.join(map(str, frame.columns))}")


def summarize_groups(results: pd.DataFrame, by: Sequence[str], metrics: Sequence[str],
                     confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per group of ``by``: ``<metric>_mean``, ``<metric>_ci`` (the
    half-width of the t interval) and ``<metric>_std`` for every metric, and
    ``seeds`` (rows in the group).  Groups keep their first-seen order."""
    _check_frame("results", results, [*by, *metrics])
    rows = []
    for key, group in results.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key))
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").dropna()
            if values.empty:
                row.update({f"{m}_mean": math.nan, f"{m}_ci": math.nan, f"{m}_std": math.nan})
                continue
            iv = mean_ci(values, confidence)
            row.update({f"{m}_mean": iv.mean, f"{m}_ci": iv.half,
                        f"{m}_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan})
        row["seeds"] = int(len(group))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(results: pd.DataFrame, by: Sequence[str], method: Sequence[str], pairs: Sequence[tuple[Any, Any]],
                 metrics: Sequence[str], seed: str = "seed", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Paired per-seed differences of methods, within each group of ``by``.

    ``method`` names the columns that identify a method (e.g. ``("policy",
    "loss")``); ``pairs`` lists ``(treatment, reference)`` method keys (tuples
    of those columns' values).  For every group and pair present, a row holds
    the group columns, ``treatment`` and ``reference`` (joined with ``+``),
    ``seeds`` (paired seeds) and per metric ``<m>`` (mean difference),
    ``<m>_ci`` (half-width), ``<m>_low``/``<m>_high``.
    """
    _check_frame("results", results, [*by, *method, seed, *metrics])
    rows = []
    for key, group in results.groupby(list(by), sort=False) if by else [((), results)]:
        key = key if isinstance(key, tuple) else (key,)
        ids = group[list(method)].apply(tuple, axis=1)
        for treatment, reference in pairs:
            t, r = group[ids == tuple(treatment)], group[ids == tuple(reference)]
            if t.empty or r.empty:
                continue
            row: dict[str, Any] = dict(zip(by, key))
            row.update(treatment="+".join(map(str, treatment)), reference="+".join(map(str, reference)))
            n = 0
            for m in metrics:
                a = pd.to_numeric(t.set_index(seed)[m], errors="coerce")
                b = pd.to_numeric(r.set_index(seed)[m], errors="coerce")
                try:
                    iv = paired_ci(a, b, confidence)
                except ValueError:
                    iv = Interval(math.nan, math.nan, 0, confidence)
                n = max(n, iv.n)
                row.update({m: iv.mean, f"{m}_ci": iv.half, f"{m}_low": iv.low, f"{m}_high": iv.high})
            row["seeds"] = n
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- how many seeds a claim needs


def sd_from_interval(interval: Interval) -> float:
    """The per-seed standard deviation behind a t interval of ``n >= 2``
    values: ``s = half * sqrt(n) / t_{(1 + c) / 2, n - 1}`` (what a table's
    ``mean ± half`` keeps of its seeds)."""
    if not isinstance(interval, Interval):
        raise TypeError(f"interval must be an Interval, got {type(interval).__name__}")
    if interval.n < 2 or math.isnan(interval.half):
        raise ValueError(f"interval must rest on at least 2 values with a half-width, got n={interval.n}, "
                         f"half={interval.half}")
    return interval.half * math.sqrt(interval.n) / t_quantile(interval.confidence, interval.n - 1)


@dataclass(frozen=True)
class SeedCount:
    """What :func:`seeds_for_stable_verdict` found: ``n`` seeds (None: more
    than ``max_seeds``), from the ``mean`` difference, the per-seed ``sd`` of
    the measured differences, the cross-machine ``spread`` and their sum in
    quadrature ``sigma``; ``lower`` maps each n tried to the expected lower
    bound ``mean - t_{n-1} * sigma / sqrt(n)``."""

    n: int | None
    mean: float
    sd: float
    spread: float
    sigma: float
    lower: dict[int, float]
    confidence: float = CONFIDENCE

    def explain(self, scale: float = 1.0, unit: str = "") -> str:
        """The arithmetic, one line per n tried."""
        unit = f" {unit}" if unit else ""
        lines = [f"sigma = sqrt(sd^2 + spread^2) = sqrt({self.sd * scale:.2f}^2 + {self.spread * scale:.2f}^2) "
                 f"= {self.sigma * scale:.2f}{unit}"]
        for n, low in self.lower.items():
            t = t_quantile(self.confidence, n - 1)
            lines.append(f"n = {n}: {self.mean * scale:.2f} - {t:.3f} * {self.sigma * scale:.2f} / sqrt({n}) = "
                         f"{low * scale:+.2f}{unit} ({'above 0' if low > 0 else 'not above 0'})")
        lines.append(f"-> {self.n} seeds" if self.n is not None else "-> more seeds than tried")
        return "\n".join(lines)


def seeds_for_stable_verdict(diffs: Iterable[float] | Interval, spread: float = 0.0, *, mean: float | None = None,
                             confidence: float = CONFIDENCE, max_seeds: int = 50) -> SeedCount:
    """The fewest paired seeds whose interval stays above 0 on any machine.

    ``diffs``: the per-seed paired differences measured on one machine (or
    their :class:`Interval`, whose per-seed sd :func:`sd_from_interval`
    recovers); ``spread``: the standard deviation of how far one seed's
    difference moves from machine to machine (same units).  A seed's
    difference on another machine scatters by ``sigma = sqrt(sd^2 +
    spread^2)`` around the ``mean`` (default: the mean of ``diffs``), and the
    expected lower bound of the paired t interval over n seeds is ``mean -
    t_{(1 + c) / 2, n - 1} * sigma / sqrt(n)``: the answer is the smallest
    n >= 2 where it is above 0 (``n=None`` when none up to ``max_seeds`` is).
    A negative mean is taken by its size (the claim "lower").

    >>> seeds_for_stable_verdict([0.9, 1.1, 1.0], spread=0.5).n
    4
    """
    _check_confidence(confidence)
    if isinstance(diffs, Interval):
        centre, sd = diffs.mean, sd_from_interval(diffs)
    else:
        x = _values("diffs", diffs)
        if x.size < 2:
            raise ValueError(f"diffs must hold at least 2 per-seed differences (to measure their spread), "
                             f"got {x.size}")
        centre, sd = float(x.mean()), float(x.std(ddof=1))
    for name, value in (("spread", spread), ("mean", mean)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if spread < 0:
        raise ValueError(f"spread must be >= 0, got {spread!r}")
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < 2:
        raise ValueError(f"max_seeds must be an int >= 2, got {max_seeds!r}")
    centre = float(mean) if mean is not None else centre
    if centre == 0:
        raise ValueError("the mean difference is 0: no sign for any number of seeds to keep")
    sigma = math.hypot(sd, float(spread))
    lower: dict[int, float] = {}
    for n in range(2, max_seeds + 1):
        lower[n] = abs(centre) - t_quantile(confidence, n - 1) * sigma / math.sqrt(n)
        if lower[n] > 0:
            return SeedCount(n, abs(centre), sd, float(spread), sigma, lower, confidence)
    return SeedCount(None, abs(centre), sd, float(spread), sigma, lower, confidence)
