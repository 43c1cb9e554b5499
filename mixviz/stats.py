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

__all__ = ["Interval", "mean_ci", "paired_ci", "verdict", "t_quantile", "summarize_groups", "paired_table",
           "format_ci", "CONFIDENCE"]

CONFIDENCE = 0.95


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
