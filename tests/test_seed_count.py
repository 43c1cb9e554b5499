"""How many seeds a claim needs to hold on any machine (issue 18, item 1):
mixviz.stats.seeds_for_stable_verdict on hand-made inputs, and
scripts/headline_seeds.py on the committed headline."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from mixviz import stats
from mixviz.stats import Interval, mean_ci, sd_from_interval, seeds_for_stable_verdict, t_quantile

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "headline_seeds.py"


def test_sd_from_interval_inverts_the_t_interval():
    values = [0.2, 0.5, 0.9, 0.4]
    iv = mean_ci(values)
    assert sd_from_interval(iv) == pytest.approx(stats.np.std(values, ddof=1))
    with pytest.raises(ValueError, match="interval"):
        sd_from_interval(Interval(0.1, math.nan, 1))
    with pytest.raises(TypeError, match="interval"):
        sd_from_interval(0.1)


def test_no_spread_and_no_scatter_needs_two_seeds():
    found = seeds_for_stable_verdict([1.0, 1.0, 1.0])
    assert found.n == 2 and found.sigma == 0 and found.lower == {2: 1.0}


def test_the_smallest_n_whose_lower_bound_is_above_zero():
    # mean 10, per-seed sd 3, spread 4: sigma 5; n = 3: 10 - 4.303 * 5 / sqrt 3 < 0; n = 4: 10 - 3.182 * 2.5 > 0
    found = seeds_for_stable_verdict([7.0, 10.0, 13.0], spread=4.0)
    assert found.sd == pytest.approx(3.0) and found.sigma == pytest.approx(5.0)
    assert found.n == 4
    assert found.lower[3] == pytest.approx(10 - t_quantile(0.95, 2) * 5 / math.sqrt(3)) and found.lower[3] < 0
    assert found.lower[4] == pytest.approx(10 - t_quantile(0.95, 3) * 2.5) and found.lower[4] > 0
    # more spread, more seeds; a larger effect, fewer
    assert seeds_for_stable_verdict([7.0, 10.0, 13.0], spread=8.0).n > 4
    assert seeds_for_stable_verdict([7.0, 10.0, 13.0], spread=4.0, mean=30.0).n == 3
    # the sign does not matter: a claim "lower" needs as many seeds
    assert seeds_for_stable_verdict([-7.0, -10.0, -13.0], spread=4.0).n == 4
    text = found.explain(unit="points")
    assert "sigma = sqrt(sd^2 + spread^2) = sqrt(3.00^2 + 4.00^2) = 5.00 points" in text and text.endswith("-> 4 seeds")


def test_an_interval_stands_for_its_seeds_and_too_much_spread_gives_none():
    iv = mean_ci([7.0, 10.0, 13.0])
    assert seeds_for_stable_verdict(iv, spread=4.0).n == 4
    none = seeds_for_stable_verdict([7.0, 10.0, 13.0], spread=100.0, max_seeds=5)
    assert none.n is None and sorted(none.lower) == [2, 3, 4, 5] and none.explain().endswith("more seeds than tried")


@pytest.mark.parametrize("kw, match", [
    (dict(diffs=[1.0]), "diffs"), (dict(diffs="abc"), "diffs"), (dict(diffs=[1.0, 2.0], spread=-1.0), "spread"),
    (dict(diffs=[1.0, 2.0], spread=math.nan), "spread"), (dict(diffs=[1.0, 2.0], max_seeds=1), "max_seeds"),
    (dict(diffs=[1.0, -1.0]), "mean"), (dict(diffs=[1.0, 2.0], confidence=2), "confidence"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        seeds_for_stable_verdict(**kw)


def test_the_headline_needs_four_seeds(tmp_path, capsys):
    """The committed quick headline (+10.7 ± 4.2 over 3 seeds) and the other machine's per-seed differences
    (+7.6, +10.0, +16.8): 3 seeds do not hold, 4 do."""
    spec = importlib.util.spec_from_file_location("headline_seeds_under_test", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    summary = {"effects": [{"comparison": "mixing - none+ce", "treatment": "mixup+mixup_ce",
                            "test_acc": 0.10733334223429362, "test_acc_ci": 0.04225466084232449, "seeds": 3}]}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    assert script.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "per-seed sd 1.70 points" in out and "per-seed sd 4.77 points (the spread)" in out
    assert "n = 3: 10.73 - 4.303 * 5.07 / sqrt(3) = -1.85 points (not above 0)" in out
    assert "n = 4: 10.73 - 3.182 * 5.07 / sqrt(4) = +2.67 points (above 0)" in out and out.endswith("-> 4 seeds\n")
    from mixviz.experiments import preset

    assert preset("quick").seeds_of("none+ce") == preset("quick").seeds_of("mixup+mixup_ce") == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="mixup"):
        script.committed_headline({"effects": []})
