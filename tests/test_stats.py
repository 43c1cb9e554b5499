"""mixviz.stats: Student-t intervals and paired per-seed differences, checked
against scipy.stats and a hand computation on fixed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from mixviz import stats


def test_mean_ci_by_hand():
    # x = 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), t_{0.975, 3} = 3.182446305284263
    iv = stats.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.half == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2, rel=1e-12)
    assert iv.low == pytest.approx(2.5 - iv.half) and iv.high == pytest.approx(2.5 + iv.half)


def test_mean_ci_matches_scipy_interval():
    x = np.array([0.912, 0.934, 0.901, 0.925, 0.918])
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    iv = stats.mean_ci(x)
    assert iv.low == pytest.approx(lo, rel=1e-12) and iv.high == pytest.approx(hi, rel=1e-12)
    lo90, hi90 = sps.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert stats.mean_ci(x, 0.9).half == pytest.approx((hi90 - lo90) / 2, rel=1e-12)


def test_one_value_has_no_interval_and_nans_are_dropped():
    iv = stats.mean_ci([0.7, float("nan")])
    assert iv.mean == 0.7 and iv.n == 1 and math.isnan(iv.half) and not iv.excludes_zero
    assert stats.verdict(iv) == "no measurable difference"


def test_paired_matches_scipy_paired_t_test():
    treatment = {0: 0.93, 1: 0.95, 2: 0.91, 3: 0.96, 4: 0.94}
    reference = {0: 0.80, 1: 0.86, 2: 0.79, 3: 0.83, 4: 0.81, 9: 0.5}   # seed 9 has no partner
    iv = stats.paired_ci(treatment, reference)
    d = np.array([treatment[s] - reference[s] for s in range(5)])
    lo, hi = sps.t.interval(0.95, 4, loc=d.mean(), scale=sps.sem(d))
    assert iv.n == 5 and iv.mean == pytest.approx(d.mean())
    assert (iv.low, iv.high) == (pytest.approx(lo), pytest.approx(hi))
    # the interval excludes 0 exactly when the two-sided paired t-test has p < 0.05
    p = sps.ttest_rel([treatment[s] for s in range(5)], [reference[s] for s in range(5)]).pvalue
    assert iv.excludes_zero == (p < 0.05)
    assert stats.verdict(iv) == "higher"


def test_pairing_removes_shared_seed_noise():
    # the same seed effect in both methods: unpaired intervals overlap, the paired one excludes 0
    seed_effect = np.array([0.0, 0.08, -0.06, 0.05, -0.04])
    a = 0.80 + seed_effect + 0.01
    b = 0.80 + seed_effect + np.array([0.0, 0.002, -0.001, 0.001, 0.0])
    ia, ib = stats.mean_ci(a), stats.mean_ci(b)
    assert ia.low < ib.high  # unpaired: overlapping
    iv = stats.paired_ci(dict(enumerate(a)), dict(enumerate(b)))
    assert iv.excludes_zero and iv.mean > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=12), st.floats(0.5, 0.99))
def test_interval_contains_mean_and_matches_scipy(values, confidence):
    x = np.array(values)
    iv = stats.mean_ci(x, confidence)
    assert iv.low <= iv.mean <= iv.high
    if x.std(ddof=1) > 0:
        lo, hi = sps.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert iv.low == pytest.approx(lo, abs=1e-9) and iv.high == pytest.approx(hi, abs=1e-9)


def test_paired_table_and_summarize_groups():
    rows = []
    for seed, (none, mix, dm) in enumerate([(0.70, 0.85, 0.86), (0.72, 0.88, 0.87), (0.69, 0.86, 0.88)]):
        rows += [dict(regime="noisy", policy="none", loss="ce", seed=seed, acc=none),
                 dict(regime="noisy", policy="mixup", loss="mixup_ce", seed=seed, acc=mix),
                 dict(regime="noisy", policy="mixup", loss="dm", seed=seed, acc=dm)]
    frame = pd.DataFrame(rows)
    summary = stats.summarize_groups(frame, ["regime", "policy", "loss"], ["acc"])
    assert list(summary["seeds"]) == [3, 3, 3]
    mix = summary[summary["loss"] == "mixup_ce"].iloc[0]
    assert mix["acc_mean"] == pytest.approx(0.8633333) and mix["acc_ci"] == pytest.approx(
        stats.mean_ci([0.85, 0.88, 0.86]).half)
    table = stats.paired_table(frame, ["regime"], ["policy", "loss"],
                               [(("mixup", "mixup_ce"), ("none", "ce")), (("mixup", "dm"), ("mixup", "mixup_ce")),
                                (("cutmix", "dm"), ("cutmix", "mixup_ce"))], ["acc"])
    assert len(table) == 2  # the cutmix pair is absent
    first = table.iloc[0]
    assert first["treatment"] == "mixup+mixup_ce" and first["reference"] == "none+ce" and first["seeds"] == 3
    assert first["acc"] == pytest.approx(np.mean([0.15, 0.16, 0.17]))
    assert first["acc_low"] > 0
    second = table.iloc[1]
    assert second["acc"] == pytest.approx(np.mean([0.01, -0.01, 0.02]))
    assert second["acc_low"] < 0 < second["acc_high"]


def test_format_ci():
    assert stats.format_ci(stats.Interval(0.9123, 0.0251, 3), 100) == "91.2 ± 2.5"
    assert stats.format_ci(stats.Interval(-0.012, 0.005, 5), 100, signed=True) == "−1.2 ± 0.5 *"
    assert stats.format_ci(stats.Interval(0.004, 0.01, 5), 100, signed=True) == "+0.4 ± 1.0"
    assert stats.format_ci(stats.Interval(0.5, math.nan, 1), 100) == "50.0"


@pytest.mark.parametrize("bad", [0, 1, 1.5, True, "0.95"])
def test_bad_confidence(bad):
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_ci([1.0, 2.0], bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="values"):
        stats.mean_ci([float("nan")])
    with pytest.raises(TypeError, match="values"):
        stats.mean_ci("abc")
    with pytest.raises(ValueError, match="share no seed"):
        stats.paired_ci({0: 1.0}, {1: 2.0})
    with pytest.raises(TypeError, match="treatment"):
        stats.paired_ci([1.0], {0: 1.0})
    with pytest.raises(ValueError, match="column"):
        stats.summarize_groups(pd.DataFrame({"a": [1]}), ["a"], ["acc"])
