import pytest
import torch

import mixviz
from mixviz._validation import check_choice, check_finite, check_labels, check_positive, check_tensor


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_finds_any_non_finite_value(bad):
    x = torch.rand(4, 3, 5, 5)
    x[2, 1, 3, 4] = bad
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        check_finite("x", x)
    check_finite("x", torch.rand(4, 3))  # finite: fine
    check_finite("x", torch.empty(0))


def test_value_checks_switch_and_context_manager():
    nan = torch.tensor([float("nan")])
    assert mixviz.validation() is not None and mixviz.value_checks_enabled()
    previous = mixviz.validation(False)
    assert previous == True  # noqa: E712 (the switch compares like a bool)
    check_finite("x", nan)  # value checks off: no error
    check_labels("y", torch.tensor([7]), num_classes=3)
    mixviz.validation(True)
    with mixviz.validation(False):
        assert not mixviz.value_checks_enabled()
    assert mixviz.value_checks_enabled()
    with pytest.raises(TypeError, match="enabled"):
        mixviz.validation("no")


def test_shape_checks_stay_on_when_value_checks_are_off():
    with mixviz.validation(False):
        with pytest.raises(ValueError, match="y must be 1-D"):
            check_labels("y", torch.zeros(2, 2, dtype=torch.long))
        with pytest.raises(TypeError, match="y must be an integer tensor"):
            check_labels("y", torch.zeros(2))


def test_label_range_and_length():
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        check_labels("y", torch.tensor([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="length 4"):
        check_labels("y", torch.tensor([0, 1]), batch=4)


def test_scalar_checks():
    check_positive("a", 1)
    check_positive("a", 0, allow_zero=True)
    for bad, err in [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError), (True, TypeError)]:
        with pytest.raises(err, match="a"):
            check_positive("a", bad)
    with pytest.raises(TypeError, match="n must be an int"):
        check_positive("n", 1.5, integer=True)
    with pytest.raises(ValueError, match="mode must be one of 'x', 'y'"):
        check_choice("mode", "z", ["x", "y"])
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        check_tensor("t", [1, 2])
