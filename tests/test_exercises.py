"""Every exercise's reference solution passes its check; wrong and unfinished answers do not."""

import pytest
import torch

from mixviz import exercises


@pytest.mark.parametrize("name", sorted(exercises.CHECKS))
def test_reference_solution_passes_its_check(name, capsys):
    exercises.CHECKS[name](exercises.SOLUTIONS[name])  # raises on a mismatch
    assert exercises.check(name, exercises.SOLUTIONS[name]) is True
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(exercises.CHECKS))
def test_a_stub_is_not_done_yet_and_does_not_raise(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    assert exercises.check(name, stub) is False
    assert "not done yet" in capsys.readouterr().out


def test_a_wrong_answer_is_named():
    def mixup_ce_without_lam(logits, y_a, y_b, lam):
        return -logits.log_softmax(1).gather(1, y_a[:, None]).mean()

    with pytest.raises(AssertionError, match="loss: differs from mixviz"):
        exercises.check_mixup_ce(mixup_ce_without_lam)

    def dm_as_mixup_ce(logits, y_a, y_b, lam, eta=1.0):
        return exercises.SOLUTIONS["mixup_ce"](logits, y_a, y_b, lam)

    with pytest.raises(AssertionError, match="eta = 1.0"):
        exercises.check_dm_loss(dm_as_mixup_ce)

    def top1_error(probs, labels, n_bins=15):  # not a calibration error at all
        return float(probs.argmax(1).ne(labels).float().mean())

    with pytest.raises(AssertionError, match="ECE with 15 bins"):
        exercises.check_ece(top1_error)

    def pointing_as_float(attr, mask):
        return exercises.SOLUTIONS["pointing"](attr, mask).float()

    with pytest.raises(AssertionError, match="dtype"):
        exercises.check_pointing(pointing_as_float)


def test_a_bug_in_the_answer_is_reported_not_raised(capsys):
    assert exercises.check("mixed_top2", lambda logits, y_a, y_b: logits.topk(99)) is False
    assert "raised RuntimeError" in capsys.readouterr().out


def test_every_exercise_has_a_solution_a_check_and_a_notebook():
    assert set(exercises.EXERCISES) == set(exercises.SOLUTIONS) == set(exercises.CHECKS)
    assert "def _dm_loss" in exercises.solution_source("dm_loss")
    with pytest.raises(ValueError, match="name must be one of"):
        exercises.check("nope", print)
    with pytest.raises(TypeError, match="fn must be a function"):
        exercises.check("dm_loss", 3)
