"""``mixviz reproduce`` (issue 18): the agreement rule on hand-made tables, the
rows it picks, the configs it rebuilds (ids checked), the exit code, and an
end-to-end re-run of a tiny grid into a fresh run store."""

import json
import math

import pandas as pd
import pytest

from mixviz import cli, experiments, runs
from mixviz.experiments import Preset, compare
from mixviz.experiments.reproduce import (claim_status, judge_claims, reproduce, row_configs, run_deviations,
                                          select_rows)
from mixviz.machine import machine_info, machine_text
from mixviz.stats import Interval

MOONS_BASE = dict(model="mlp", epochs=1, batch_size=32, lr=0.05, device="cpu",
                  dataset_options=dict(n=128), model_options=dict(hidden=16, depth=2))
TINY = Preset("tiny", "moons, small MLP, 1 epoch, 3 seeds", bases={"moons": MOONS_BASE}, seeds=(0, 1, 2),
              policies=("none", "mixup"))


def iv(mean, half, n=3):
    return Interval(mean, half, n)


# ---------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("committed, rerun, status", [
    (iv(0.107, 0.042), iv(0.115, 0.03), "holds"),  # starred, starred again, same sign
    (iv(0.107, 0.042), iv(0.115, 0.119), "same sign"),  # the other machine's headline: agrees, more weakly
    (iv(0.107, 0.042), iv(-0.02, 0.05), "FLIPPED"),  # starred, opposite sign (even without a star)
    (iv(-0.05, 0.01), iv(0.0, 0.01), "FLIPPED"),  # no difference at all is not the claimed sign
    (iv(0.02, 0.05), iv(0.01, 0.04), "no claim"),  # unstarred, still includes 0
    (iv(0.02, 0.05), iv(0.06, 0.04), "new claim"),  # unstarred, now starred: a disagreement
    (iv(0.02, math.nan, 1), iv(-0.1, math.nan, 1), "1 seed: illustration"),  # no claim to judge
    (iv(0.107, 0.042, 3), iv(-0.1, math.nan, 1), "partial (1 of 3 seeds)"),
])
def test_claim_status(committed, rerun, status):
    assert claim_status(committed, rerun) == status


def test_claim_status_checks_its_arguments():
    with pytest.raises(TypeError, match="rerun"):
        claim_status(iv(0.1, 0.01), 0.1)


def effects_table(rows):
    """An effects.csv by hand: (treatment, test_acc, ci, seeds)."""
    return pd.DataFrame([{"regime": "r", "comparison": "mixing - none+ce", "treatment": t, "reference": "none+ce",
                          "seeds": n, "test_acc": m, "test_acc_ci": h} for t, m, h, n in rows])


def test_judge_claims_on_hand_made_tables():
    committed = effects_table([("flip", 0.10, 0.04, 3), ("held", 0.10, 0.04, 3), ("newly", 0.01, 0.05, 3),
                               ("quiet", 0.01, 0.05, 3), ("one", 0.2, math.nan, 1), ("not rerun", 0.3, 0.1, 3)])
    rerun = effects_table([("flip", -0.05, 0.04, 3), ("held", 0.12, 0.05, 3), ("newly", 0.08, 0.05, 3),
                           ("quiet", -0.01, 0.03, 3), ("one", -0.1, math.nan, 1)])
    claims = judge_claims(committed, rerun)
    assert list(claims["treatment"]) == ["flip", "held", "newly", "quiet", "one"]  # only claims re-run
    assert list(claims["status"]) == ["FLIPPED", "holds", "new claim", "no claim", "1 seed: illustration"]
    assert list(claims["agree"]) == [False, True, False, True, None]
    assert list(claims["committed_verdict"]) == ["higher", "higher", "no measurable difference",
                                                 "no measurable difference", "1 seed: illustration"]
    assert claims.loc[0, "committed"] == "+10.0 ± 4.0 *" and claims.loc[0, "rerun"] == "−5.0 ± 4.0 *"
    assert set(claims["metric"]) == {"test_acc"}
    with pytest.raises(ValueError, match="rerun"):
        judge_claims(committed, rerun.drop(columns="seeds"))


# ---------------------------------------------------------------------------- rows and configs


def results_of(p, tmp_path, name="tiny"):
    out = tmp_path / name
    compare(p, out, runs_root=tmp_path / "store", log=lambda _: None, plots=False)
    return out, pd.read_csv(out / "results.csv")


def test_select_rows_by_sample_or_by_cells():
    table = pd.DataFrame({"regime": ["a", "a", "b", "b"] * 3, "method": ["x", "y"] * 6, "seed": range(12),
                          "run_id": [f"id{i}" for i in range(12)]})
    first = select_rows(table, sample=5, seed=3)
    assert len(first) == 5 and first.equals(select_rows(table, sample=5, seed=3))  # seeded
    assert list(first["seed"]) == sorted(first["seed"])  # kept in table order
    assert not first.equals(select_rows(table, sample=5, seed=4))
    assert len(select_rows(table, sample=99)) == 12
    assert list(select_rows(table, regimes=["b"], methods=["x"])["seed"]) == [2, 6, 10]
    assert len(select_rows(table)) == 12
    with pytest.raises(ValueError, match="sample"):
        select_rows(table, sample=2, methods=["x"])
    with pytest.raises(ValueError, match="methods must be among x, y; got z"):
        select_rows(table, methods=["z"])
    with pytest.raises(ValueError, match="sample"):
        select_rows(table, sample=0)


def test_row_configs_rebuild_the_exact_configs_or_name_the_row(tmp_path):
    _, table = results_of(TINY, tmp_path)
    cells = row_configs(table, TINY)
    assert [runs.config_id(c.config) for c in cells] == list(table["run_id"])
    assert [(c.regime, c.method, c.config.seed) for c in cells] == [
        (r.regime, r.method, r.seed) for r in table.itertuples()]
    # the preset changed since (another learning rate): the stored config.json is used, read only
    changed = Preset("tiny", "", bases={"moons": dict(MOONS_BASE, lr=0.1)}, seeds=(0, 1, 2),
                     policies=("none", "mixup"))
    again = row_configs(table, changed, tmp_path / "store")
    assert [runs.config_id(c.config) for c in again] == list(table["run_id"])
    with pytest.raises(ValueError, match=r"rows: cannot rebuild the config of moons none\+ce seed 0"):
        row_configs(table, changed, tmp_path / "empty")
    with pytest.raises(ValueError, match="no preset was given"):
        row_configs(table, None)


def test_run_deviations():
    a = pd.DataFrame({"regime": ["r", "r"], "method": ["m", "m"], "seed": [0, 1], "test_acc": [0.68, 0.70]})
    b = pd.DataFrame({"regime": ["r"], "method": ["m"], "seed": [0], "test_acc": [0.55]})
    dev = run_deviations(a, b)
    assert len(dev) == 1 and dev.loc[0, "deviation"] == pytest.approx(-0.13)


# ---------------------------------------------------------------------------- end to end


def test_reproduce_a_tiny_grid_into_a_fresh_store_and_fail_on_a_flip(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(experiments.PRESETS, "tiny", TINY)
    out, table = results_of(TINY, tmp_path)
    fresh = tmp_path / "fresh"
    code = cli.main(["reproduce", str(out), "--runs", str(fresh), "--methods", "none+ce,mixup+mixup_ce",
                     "mixup+dm"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # every re-run cell was trained into the fresh store under the committed run id
    assert sorted(p.name for p in fresh.iterdir()) == sorted(table["run_id"])
    assert all(runs.is_finished(fresh / rid) for rid in table["run_id"])
    report = (out / "reproduce.md").read_text()
    assert report.startswith(f"# Reproduction of `{out.as_posix()}`")
    assert f"- re-run on: {machine_text(machine_info('cpu'))}" in report
    assert "Re-trained 9 of 9 runs of preset `tiny`" in report
    # the same machine, code and seeds: every run is the same, and so is every claim
    assert "Mean absolute deviation 0.0 points over 9 runs; largest 0.0 points" in report
    assert "FLIPPED" not in report.split("## Claims")[1].split("|---")[1]
    assert "**Outcome:** every starred claim re-run keeps its sign." in report
    assert report in printed.out and "report written to" in printed.out

    # a committed starred claim whose sign the re-run does not have: exit code 1, naming it
    effects = pd.read_csv(out / "effects.csv")
    i = effects.index[(effects["treatment"] == "mixup+dm") & (effects["reference"] == "none+ce")][0]
    effects.loc[i, ["test_acc", "test_acc_ci"]] = [-0.5 if effects.loc[i, "test_acc"] >= 0 else 0.5, 0.01]
    effects.to_csv(out / "effects.csv", index=False)
    assert cli.main(["reproduce", str(out), "--runs", str(fresh)]) == 1
    err = capsys.readouterr().err
    assert "a starred claim flipped: moons: mixup+dm - none+ce, test_acc (mixing - none+ce)" in err
    assert "**Outcome:** starred claims flipped: moons: mixup+dm - none+ce, test_acc" in (out / "reproduce.md").read_text()


def test_reproduce_samples_and_refuses_the_default_store(tmp_path, monkeypatch, runs_root):
    out, table = results_of(TINY, tmp_path, name="elsewhere")
    with pytest.raises(ValueError, match="fresh run store"):
        reproduce(out, preset=TINY, runs_root=runs_root, log=None)
    result = reproduce(out, preset=TINY, sample=2, seed=1, log=None)  # default store: beside the results
    assert len(result.results) == 2 and (out / "reproduce" / "runs").is_dir()
    assert set(result.results["run_id"]) <= set(table["run_id"])
    assert result.flipped == [] and set(result.claims["status"]) <= {"partial (1 of 3 seeds)", "partial (2 of 3 seeds)",
                                                                     "no claim", "holds", "same sign"}
    assert (result.deviations["deviation"] == 0).all() and result.path == out / "reproduce.md"
    with pytest.raises(ValueError, match="preset must be one of"):
        reproduce(out, preset="nope", log=None)
    with pytest.raises(FileNotFoundError, match="results.csv"):
        reproduce(tmp_path / "nothing", preset=TINY, log=None)


def test_machines_are_counted_with_unrecorded_rows_named():
    from mixviz.experiments.reproduce import _machines

    table = pd.DataFrame(dict(machine=["Intel, 2 cores", None, "", "Intel, 2 cores"]))
    assert _machines(table) == ["Intel, 2 cores (2 runs)",
                                "not recorded (runs made before runs recorded their machine) (2 runs)"]
    assert _machines(pd.DataFrame(dict(seed=[0]))) == [
        "not recorded (runs made before runs recorded their machine) (1 run)"]
    assert _machines(pd.DataFrame(dict(machine=[]))) == []
