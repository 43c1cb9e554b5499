"""The generated "What we found" text and the lecture's claims, on hand-made tables."""

import math

import pandas as pd
import pytest

from mixviz import stats
from mixviz.experiments import findings, teaching


def _effect(treatment, mean, half, seeds, comparison="mixing - none+ce", reference="none+ce", regime="noisy40",
            **more):
    row = {"regime": regime, "comparison": comparison, "treatment": treatment, "reference": reference,
           "test_acc": mean, "test_acc_ci": half, "seeds": seeds}
    for metric, (m, h) in more.items():
        row[metric], row[f"{metric}_ci"] = m, h
    return row


def test_interval_text_gives_bounds_and_seeds_and_one_seed_is_not_tested():
    text = findings.interval_text(stats.Interval(0.107, 0.042, 3))
    assert text == "+10.7 ± 4.2 points (95 % interval +6.5 to +14.9, 3 seeds)"
    one = stats.Interval(0.068, math.nan, 1)
    assert findings.interval_text(one) == "+6.8 points (one seed: not tested)"
    assert findings.verdict_text(one) == "one seed: not tested"
    assert findings.verdict_text(stats.Interval(0.01, 0.05, 5)) == "no measurable difference"
    assert findings.verdict_text(stats.Interval(-0.1, 0.05, 5), "more", "less") == "less"


def test_near_zero_star_is_explained_with_printed_bounds_and_a_clear_star_is_not():
    near = stats.Interval(0.011, 0.010999, 3)  # "+1.1 ± 1.1 *", lower bound 0.0001 points
    note = findings.near_zero_note(near)
    assert "+0.0001" in note and "+2.1999" in note and "no contradiction" in note
    assert findings.near_zero_note(stats.Interval(0.107, 0.042, 3)) == ""  # clearly starred
    assert findings.near_zero_note(stats.Interval(0.01, 0.05, 3)) == ""  # not starred


def test_tour_findings_counts_seeds_and_ranks_nothing_with_one_seed():
    effects = pd.DataFrame([_effect("mixup+mixup_ce", 0.011, 0.010999, 3),
                            _effect("mixup+dm", 0.05, math.nan, 1)])
    text = findings.tour_findings(effects, "noisy40", metrics=("test_acc",))
    assert "mixup: 3 seeds" in text and "mixup + DM: one seed" in text
    assert "mixup + DM minus plain training, test accuracy: +5.0 points (one seed: not tested)." in text
    assert "no measurable difference" not in text
    assert "more accurate" in text and "+0.0001" in text  # the starred near-zero row, explained
    assert "cannot be read from this table" in text and "only mixup has several seeds" in text


def test_effects_findings_unstarred_row_says_no_measurable_difference():
    effects = pd.DataFrame([_effect("cutmix+mixup_ce", -0.06, 0.10, 5)])
    (line,) = findings.effects_findings(effects)
    assert line == ("CutMix minus plain training, test accuracy: −6.0 ± 10.0 points (95 % interval −16.0 to +4.0, "
                    "5 seeds): no measurable difference.")


def test_boundary_findings_states_mixups_cost_and_dm_equal_to_mixup():
    table = pd.DataFrame({"method": ["none+ce", "mixup+mixup_ce", "mixup+dm"], "seed": [0, 0, 0],
                          "accuracy": [0.999, 0.84, 0.84], "ece": [0.004, 0.076, 0.076]})
    text = findings.boundary_findings({"spirals": table})
    assert "mixup costs 15.9 points of accuracy against plain training (99.9 → 84.0 %)" in text
    assert "(0.4 → 7.6 %)" in text and "+7.2 points" in text
    assert "differ by at most 0.0 points" in text and "log 1 = 0" in text
    assert "not tested" in text


def test_top2_findings_range_chance_and_one_seed_dm_row():
    mixed = pd.DataFrame({"method": ["none+ce", "mixup+mixup_ce", "mixup+mixup_ce", "mixup+dm"], "seed": [0, 0, 1, 0],
                          "mixed_top1": [0.5, 0.6, 0.6, 0.6], "mixed_top2": [0.088, 0.10, 0.11, 0.103]})
    text = findings.top2_findings(mixed, 10)
    assert "8.8 % (plain training) to 10.5 % (mixup)" in text
    assert "scores 2.2 %" in text and "20 %" in text
    assert "mixup + DM minus mixup, mixed Top-2: +0.3 points (one seed: not tested)." in text
    assert findings.top2_chance(10) == pytest.approx((0.2, 1 / 45))


def test_calibration_findings_reads_the_temperature_table():
    scaled = pd.DataFrame({"model": ["none+ce", "mixup+mixup_ce", "cutmix+mixup_ce"], "temperature": [0.85, 0.33, 0.45],
                           "ece": [0.119, 0.327, 0.228], "ece_scaled": [0.071, 0.054, 0.047]})
    text = findings.calibration_findings(scaled)
    assert "plain training's ECE is 11.9 %" in text and "22.8 to 32.7 %" in text and "0.33 to 0.45" in text


def test_saliency_findings_give_intervals_chance_and_the_rule():
    intervals = pd.DataFrame({"method": ["none+ce", "mixup+mixup_ce"], "seed": [0, 0], "attribution": "gradcam",
                              "n_images": 128, "n_pairs": 40, "pointing": [0.52, 0.62], "pointing_ci": [0.09, 0.08],
                              "pointing_chance": 0.25, "mixed_share": [0.17, 0.18], "mixed_share_ci": [0.02, 0.02],
                              "mixed_share_chance": 0.12})
    example = {"sample": 7, "ranked": {"none+ce": False, "mixup+mixup_ce": True}, "candidates": 30, "rule": "RULE"}
    text = findings.saliency_findings(intervals, example)
    assert "first 128 test images (40 mixed pairs" in text
    assert "mixup 62.0 ± 8.0 %" in text and "chance 25.0 %" in text and "2 of 2 intervals lie above chance" in text
    assert "image 7" in text and "RULE" in text and "1 of 2 models" in text


def test_dm_loss_findings_says_where_the_minima_lie():
    grid = {"lam": 0.7, "eta": 1.0, "mode": "both", "step": 0.01,
            "argmin": {"mixup_ce": (0.695, 0.295), "dm": (0.675, 0.315)}}
    trace = pd.DataFrame({"loss_name": ["dm", "mixup_ce", "dm", "mixup_ce"], "step": [0, 0, 9, 9],
                          "p_minor": [0.1, 0.1, 0.26, 0.13], "p_rest": [0.8, 0.8, 0.09, 0.29],
                          "top2": [0.0, 0.0, 0.95, 0.6]})
    trace.attrs["share_major"] = 0.78
    text = findings.dm_loss_findings(grid, trace)
    assert "DM's at (0.675, 0.315), the label at (0.700, 0.300)" in text
    assert "a different optimum" in text
    assert "label share of 0.78" in text and "the smaller 0.22" in text and "0.260 with DM" in text
    assert "DM at step 9" in text and "mixup CE not within 9 steps" in text
    grid["argmin"]["dm"] = (0.695, 0.305)
    assert "the same optimum" in findings.dm_loss_findings(grid)


def test_semi_findings_with_one_seed_test_nothing():
    paired = pd.DataFrame([{"labels_per_class": 4, "treatment": "fixmatch+dm", "reference": "fixmatch+mixup",
                            "test_acc": 0.016, "test_acc_ci": math.nan, "seeds": 1}])
    summary = pd.DataFrame({"seeds": [1, 1]})
    text = findings.semi_findings(paired, summary)
    assert "FixMatch + DM minus FixMatch + mixup, test accuracy: +1.6 points (one seed: not tested)" in text
    assert "no measurable difference" not in text and "Seeds per method: 1" in text


def test_outcome_rule():
    assert teaching.outcome(0, 12) == "did not reproduce here"
    assert teaching.outcome(1, 12) == "reproduced in only 1 of 12 comparisons"
    assert teaching.outcome(6, 12) == "reproduced"
    assert teaching.outcome(0, 0) == "not tested"


def test_claims_on_hand_made_tables():
    effects = pd.DataFrame([
        _effect("mixup+dm", 0.009, 0.007, 5, "DM - mixup CE", "mixup+mixup_ce", "clean", mixed_top2=(-0.01, 0.02)),
        _effect("cutmix+dm", 0.036, 0.058, 5, "DM - mixup CE", "cutmix+mixup_ce", mixed_top2=(0.014, 0.027)),
        _effect("puzzlemix+mixup_ce", -0.097, 0.054, 5, "vs mixup - mixup+mixup_ce", "mixup+mixup_ce"),
        _effect("automix+mixup_ce", -0.012, 0.039, 5, "vs mixup - mixup+mixup_ce", "mixup+mixup_ce"),
    ])
    dm = teaching.dm_claim(effects, where={("clean", "mixup+dm"): frozenset({"x"}),
                                           ("clean", "mixup+mixup_ce"): frozenset({"y"})})
    # the one measurable difference pairs rows from two machines: it does not count as reproducing the claim
    assert "**Did not reproduce here.**" in dm
    assert ("higher in 1 (1 of them with its two rows trained on different machines, which is not counted as "
            "reproducing the claim), lower in 0, no measurable difference in 1") in dm
    same = teaching.dm_claim(effects)  # without machine records the same table reproduces it in part
    assert "Accuracy: reproduced" in same and "mixed Top-2: did not reproduce here" in same
    dyn = teaching.dynamic_claim(effects)
    assert "Did not reproduce here" in dyn and "less accurate in 1, no measurable difference in 1" in dyn
    assert "PuzzleMix with 40 % noisy labels: −9.7 ± 5.4 points" in dyn
    seeds = range(5)
    cal = pd.DataFrame([{"regime": "noisy40", "method": m, "seed": s, "ece": e + 0.01 * s, "ece_scaled": es + d,
                         "temperature": t}
                        for m, e, es, t in (("none+ce", 0.10, 0.05, 0.8), ("mixup+mixup_ce", 0.32, 0.05, 0.35))
                        for s, d in zip(seeds, (0.01, -0.01, 0.0, 0.02, -0.02))])
    text = teaching.calibration_claim(cal)
    assert "Did not reproduce here" in text and "+22.0" in text and "worse calibrated" in text
    assert "After temperature scaling: +0.0" in text and "the excess goes away" in text


def test_teaching_section_from_the_committed_results():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = teaching.teaching_section(root)
    assert text is not None and text.count("\n1. ") + text.count("\n2. ") + text.count("\n3. ") == 3
    assert teaching.teaching_section(root / "nowhere") is None


def test_docs_teaching_holds_the_generated_section():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "teaching.md").read_text()
    found = re.search(r"<!-- begin: teaching -->\n(.*?)\n<!-- end: teaching -->", page, re.S)
    assert found and found.group(1) == teaching.teaching_section(root)
