"""Clopper–Pearson intervals and the Rate record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from offswitch.stats import Rate, clopper_pearson, min_trials_for_lower_bound, min_trials_for_upper_bound


@st.composite
def counts(draw, max_n: int = 2000):
    n = draw(st.integers(0, max_n))
    k = draw(st.integers(0, n))
    return k, n


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [
        # reference values: R binom.test(k, n)$conf.int
        (0, 39, 0.0, 0.09025110),
        (39, 39, 0.90974890, 1.0),
        (5, 100, 0.01643188, 0.11283491),
        (1, 10, 0.002528579, 0.4450161),
        (50, 100, 0.3983211, 0.6016789),
    ],
)
def test_known_values(k, n, lo, hi):
    got_lo, got_hi = clopper_pearson(k, n)
    assert got_lo == pytest.approx(lo, abs=1e-7)
    assert got_hi == pytest.approx(hi, abs=1e-7)


def test_zero_of_39_is_not_reported_as_zero_percent():
    assert str(Rate.of(0, 39)) == "0.0% (0.0–9.0%) [0/39]"
    assert str(Rate.of(39, 39)) == "100.0% (91.0–100.0%) [39/39]"
    assert str(Rate.of(0, 0)) == "n/a [0/0]"


@given(counts())
@settings(max_examples=200, deadline=None)
def test_interval_contains_the_rate_and_stays_in_0_1(kn):
    k, n = kn
    lo, hi = clopper_pearson(k, n)
    rate = k / n if n else 0.0
    assert 0.0 <= lo <= rate <= hi <= 1.0


@given(counts(max_n=400))
@settings(max_examples=100, deadline=None)
def test_bounds_solve_the_defining_tail_equations(kn):
    """lo is the p with P(X >= k | p) = alpha/2, hi the p with P(X <= k | p) = alpha/2."""
    from scipy.stats import binom

    k, n = kn
    if n == 0:
        return
    lo, hi = clopper_pearson(k, n)
    if k > 0:
        assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-6)
    if k < n:
        assert binom.cdf(k, n, hi) == pytest.approx(0.025, abs=1e-6)


@given(st.integers(1, 500), st.data())
@settings(max_examples=100, deadline=None)
def test_bounds_grow_with_k(n, data):
    k = data.draw(st.integers(0, n - 1))
    lo_a, hi_a = clopper_pearson(k, n)
    lo_b, hi_b = clopper_pearson(k + 1, n)
    assert lo_a <= lo_b and hi_a <= hi_b


def test_wider_alpha_gives_narrower_interval():
    lo95, hi95 = clopper_pearson(3, 50, 0.05)
    lo80, hi80 = clopper_pearson(3, 50, 0.20)
    assert lo95 < lo80 and hi80 < hi95


@pytest.mark.parametrize("k, n", [(-1, 5), (6, 5), (0, -1)])
def test_impossible_counts_are_errors(k, n):
    with pytest.raises(ValueError):
        clopper_pearson(k, n)


def test_non_integer_counts_are_errors():
    with pytest.raises(TypeError):
        clopper_pearson(1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        clopper_pearson(1, 3, alpha=1.5)


def test_rate_record_round_trips_and_rejects_inconsistent_values():
    rate = Rate.of(7, 40)
    assert Rate.model_validate(rate.model_dump()) == rate
    with pytest.raises(ValidationError):
        Rate(k=5, n=4, rate=1.0, lo=0.5, hi=1.0)
    with pytest.raises(ValidationError):
        Rate(k=1, n=4, rate=0.25, lo=0.3, hi=0.9)  # interval misses the rate
    with pytest.raises(ValidationError):
        Rate(k=1, n=4, rate=0.25, lo=0.0, hi=0.9, extra=1)


def test_pool_sums_counts():
    assert Rate.pool([Rate.of(1, 10), Rate.of(0, 30)]) == Rate.of(1, 40)


def test_min_trials_match_the_interval():
    n = min_trials_for_lower_bound(0.99)
    assert clopper_pearson(n, n)[0] >= 0.99 > clopper_pearson(n - 1, n - 1)[0]
    n = min_trials_for_upper_bound(0.02)
    assert clopper_pearson(0, n)[1] <= 0.02 < clopper_pearson(0, n - 1)[1]


def test_fisher_exact_known_values_and_laws():
    from offswitch.stats import fisher_exact

    assert fisher_exact(27, 50, 19, 50) == pytest.approx(0.1598, abs=1e-4)
    assert fisher_exact(40, 100, 17, 100) == pytest.approx(5.06e-4, rel=1e-2)
    assert fisher_exact(5, 10, 5, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fisher_exact(3, 2, 0, 1)

    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
    def symmetric(a, b, c, d):
        p = fisher_exact(a, a + b, c, c + d)
        assert 0.0 <= p <= 1.0 + 1e-9
        assert p == pytest.approx(fisher_exact(c, c + d, a, a + b), rel=1e-9, abs=1e-12)

    symmetric()
