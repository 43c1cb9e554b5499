"""mixviz.experiments.reading: the README's reading of the results, generated from hand-made tables."""

from __future__ import annotations

import pandas as pd
import pytest

from mixviz.experiments import reading as rd


def effect(regime, comparison, treatment, reference, acc, ci, seeds=5, **more):
    return dict(regime=regime, comparison=comparison, treatment=treatment, reference=reference, test_acc=acc,
                test_acc_ci=ci, seeds=seeds, **more)


EFFECTS = pd.DataFrame([
    effect("noisy40", "mixing - none+ce", "mixup+mixup_ce", "none+ce", 0.117, 0.036, memorised=-0.22,
           memorised_ci=0.05),
    effect("noisy40", "mixing - none+ce", "average+midpoint", "none+ce", -0.074, 0.031),
    effect("noisy40", "mixing - none+ce", "cutmix+mixup_ce", "none+ce", -0.06, 0.10),
    effect("noisy40", "DM - mixup CE", "mixup+dm", "mixup+mixup_ce", -0.014, 0.042),
    effect("clean", "DM - mixup CE", "mixup+dm", "mixup+mixup_ce", 0.009, 0.007),
    effect("noisy40", "vs mixup - mixup+mixup_ce", "puzzlemix+mixup_ce", "mixup+mixup_ce", -0.097, 0.054),
    effect("noisy40", "vs mixup - mixup+mixup_ce", "automix+mixup_ce", "mixup+mixup_ce", -0.012, 0.039),
    effect("clean", "mixing - none+ce", "mixup+mixup_ce", "none+ce", 0.002, 0.008),
])
SUMMARY = pd.DataFrame([dict(regime="noisy40", method="none+ce", memorised=0.29, sec_per_epoch=0.5),
                        dict(regime="noisy40", method="mixup+mixup_ce", memorised=0.07, sec_per_epoch=0.5),
                        dict(regime="noisy40", method="puzzlemix+mixup_ce", memorised=0.1, sec_per_epoch=1.6)])


def test_difference_and_names():
    assert rd.difference(EFFECTS.iloc[0]) == "+11.7 ± 3.6"
    assert rd.difference(EFFECTS.iloc[1]) == "−7.4 ± 3.1"
    assert rd.name("mixup+dm") == "mixup + DM" and rd.name("mystery+ce") == "mystery+ce"


def test_noisy_sentences_split_by_the_interval():
    text = rd.noisy_sentences(EFFECTS, SUMMARY)
    assert "paired against plain training, points): more accurate than plain training: mixup (+11.7 ± 3.6);" in text
    assert "less accurate: input averaging with midpoint labels (−7.4 ± 3.1)" in text
    assert "no measurable difference: CutMix (−6.0 ± 10.0)" in text
    assert "plain training predicts the flipped label for 29 %" in text and "mixup for 7 % (−22.0 ± 5.0 points)" in text
    assert rd.noisy_sentences(EFFECTS, SUMMARY, regime="few20") == ""


def test_dm_sentences_count_claims_and_mark_pairs_across_machines():
    where = {("clean", "mixup+dm"): frozenset({"B"}), ("clean", "mixup+mixup_ce"): frozenset({"A"}),
             ("noisy40", "mixup+dm"): frozenset({"A"}), ("noisy40", "mixup+mixup_ce"): frozenset({"A"})}
    text = rd.dm_sentences(EFFECTS, None, where)
    assert text.startswith("DM minus the mixup CE on the same policy changes test accuracy measurably in 1 of 2")
    assert "(mixup + DM, clean labels: +0.9 ± 0.7, its two rows trained on different machines)" in text
    assert "1 of the 2 comparisons pair rows trained on different machines" in text
    assert "at 40 % noise: mixup −1.4 ± 4.2 points" in text
    plain = rd.dm_sentences(EFFECTS)
    assert "machines" not in plain
    sweep = pd.DataFrame([dict(test_acc=0.01, test_acc_ci=0.02, seeds=3, ece=0.05, ece_ci=0.01),
                          dict(test_acc=0.05, test_acc_ci=0.02, seeds=3, ece=0.0, ece_ci=0.01)])
    text = rd.dm_sentences(EFFECTS, sweep)
    assert "The eta sweep (2 settings, 3 seeds) moves test accuracy measurably in 1 of them; 2 of its 4" in text


def test_machines_from_a_results_table():
    results = pd.DataFrame(dict(regime=["a", "a", "a"], method=["m", "m", "n"], machine=["X", None, "X"]))
    assert rd.machines(results) == {("a", "m"): frozenset({"X", ""}), ("a", "n"): frozenset({"X"})}
    assert rd.machines(results.drop(columns="machine")) == {} and rd.machines(None) == {}


def test_dynamic_and_regime_sentences():
    text = rd.dynamic_sentences(EFFECTS, SUMMARY)
    assert "40 % noisy labels: below mixup: PuzzleMix (−9.7 ± 5.4); no measurable difference: AutoMix" in text
    assert "No dynamic policy is measurably above plain mixup in any regime." in text
    assert "PuzzleMix 3.2x" in text
    assert rd.regime_sentences(EFFECTS) == ("*clean labels* (5 seeds): none above plain training; no measurable "
                                            "difference: 1 method(s).")


def test_calibration_and_semi_sentences():
    rows = []
    for seed in range(3):
        rows.append(dict(regime="noisy40", method="none+ce", seed=seed, temperature=0.8, ece=0.10 + 0.01 * seed,
                         ece_scaled=0.05))
        rows.append(dict(regime="noisy40", method="mixup+mixup_ce", seed=seed, temperature=0.4,
                         ece=0.30 + 0.02 * seed, ece_scaled=0.03 + 0.001 * seed))
    text = rd.calibration_sentences(pd.DataFrame(rows))
    assert "every mixing method's ECE is +21 to +21 points from plain training's (1 of 1 intervals above 0)" in text
    assert "temperatures are 0.40 to 0.40 (plain training 0.80)" in text
    assert "measurably better calibrated than plain training: mixup (−1.9 ± " in text
    paired = pd.DataFrame([dict(labels_per_class=4, treatment="fixmatch+dm", reference="fixmatch+mixup",
                                test_acc=0.003, test_acc_ci=0.04, seeds=3),
                           dict(labels_per_class=4, treatment="fixmatch+mixup", reference="fixmatch",
                                test_acc=0.054, test_acc_ci=0.044, seeds=3)])
    assert rd.semi_sentences(paired) == (
        "Test accuracy, paired, in points. With 4 labels per class (3 seeds): FixMatch + DM minus FixMatch + mixup "
        "+0.3 ± 4.0 (no measurable difference); FixMatch + mixup minus FixMatch +5.4 ± 4.4 (more accurate).")


def test_reading_of_a_tree(tmp_path):
    assert rd.reading(tmp_path) is None
    full = tmp_path / "results" / "full"
    full.mkdir(parents=True)
    EFFECTS.to_csv(full / "effects.csv", index=False)
    SUMMARY.to_csv(full / "summary.csv", index=False)
    text = rd.reading(tmp_path)
    assert text.startswith("- **Noisy labels, where mixup's best-known effect shows.** With 40 % noisy labels")
    assert "- **DM against the mixup CE.**" in text and "Semi-supervised" not in text


@pytest.mark.parametrize("value", [0.0, 1e-9])
def test_a_zero_half_width_is_no_claim_unless_the_mean_is_off_zero(value):
    row = effect("clean", "DM - mixup CE", "mixup+dm", "mixup+mixup_ce", value, 0.0)
    assert rd._starred(row) is (value != 0.0)
