"""The time budget: interrupts runaway code, but never inside shielded framework calls."""

import time

import pytest

from voxlab.engine.budget import BudgetExceeded, shielded, time_budget


def test_runaway_loop_interrupted():
    with pytest.raises(BudgetExceeded):
        with time_budget(0.1):
            while True:
                pass


def test_swallowed_expiry_fires_again():
    start = time.monotonic()
    with pytest.raises(BudgetExceeded):
        with time_budget(0.1):
            try:
                while True:
                    pass
            except Exception:       # BudgetExceeded is not an Exception
                pass
    assert time.monotonic() - start < 5


def test_expiry_inside_shielded_call_is_raised_after_it():
    done = []

    @shielded
    def framework_step():
        t = time.monotonic()
        while time.monotonic() - t < 0.3:
            pass
        done.append("finished")

    with pytest.raises(BudgetExceeded):
        with time_budget(0.1):
            framework_step()
    assert done == ["finished"]


def test_quick_body_is_not_an_overrun():
    for _ in range(200):
        with time_budget(0.05):
            sum(range(1000))


def test_nested_budget_uses_the_outer_one():
    with pytest.raises(BudgetExceeded):
        with time_budget(0.1):
            with time_budget(100):
                while True:
                    pass
