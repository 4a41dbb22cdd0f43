"""Rates with honest uncertainty: every rate offswitch reports carries its count and a 95%
Clopper–Pearson interval, so 0 out of 39 reads "0.0% (0.0–9.0%) [0/39]", never "0%".

Clopper–Pearson is the exact binomial interval: conservative (coverage is at least 1 - alpha
for every true rate), and well defined at k = 0 and k = n, where the rates that matter most for
a switch (ASR near 1, FAR near 0) live.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided exact (1 - alpha) interval for a binomial rate of ``k`` successes in ``n``.

    ``clopper_pearson(0, 39) == (0.0, 0.0903...)``. For ``n == 0`` the interval is (0, 1):
    no evidence either way.
    """
    if not (isinstance(k, int) and isinstance(n, int)) or isinstance(k, bool) or isinstance(n, bool):
        raise TypeError("k and n must be integers")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha})")
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    # beta.ppf is accurate to ~1e-15; clamp so that lo <= k/n <= hi holds exactly
    rate = k / n
    return min(max(lo, 0.0), rate), max(min(hi, 1.0), rate)


def fisher_exact(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test that ``k1/n1`` and ``k2/n2`` share one rate
    (how two ablations' counts are compared in docs/switch-quality.md)."""
    for k, n in ((k1, n1), (k2, n2)):
        if n < 0 or k < 0 or k > n:
            raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
    from scipy.stats import fisher_exact as _fisher

    return float(_fisher([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)


def min_trials_for_lower_bound(min_rate: float, alpha: float = 0.05) -> int:
    """The fewest trials for which n/n successes give a lower bound of at least ``min_rate``.

    With all n firing the lower bound is (alpha/2)^(1/n); a test asking for ASR >= 0.99 needs
    n >= 367 before it can pass at all.
    """
    if not 0.0 < min_rate < 1.0:
        raise ValueError("min_rate must be in (0, 1)")
    n = math.ceil(math.log(alpha / 2) / math.log(min_rate))
    while clopper_pearson(n, n, alpha)[0] < min_rate:  # guard the floating-point edge
        n += 1
    return n


def min_trials_for_upper_bound(max_rate: float, alpha: float = 0.05) -> int:
    """The fewest trials for which 0/n gives an upper bound of at most ``max_rate``."""
    if not 0.0 < max_rate < 1.0:
        raise ValueError("max_rate must be in (0, 1)")
    n = math.ceil(math.log(alpha / 2) / math.log(1.0 - max_rate))
    while clopper_pearson(0, n, alpha)[1] > max_rate:
        n += 1
    return n


def _percent(x: float) -> str:
    return f"{100.0 * x:.1f}"


class Rate(BaseModel):
    """k out of n with its 95% Clopper–Pearson interval [lo, hi]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(ge=0)
    n: int = Field(ge=0)
    rate: float = Field(ge=0.0, le=1.0)
    lo: float = Field(ge=0.0, le=1.0)
    hi: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> Rate:
        if self.k > self.n:
            raise ValueError("k must not exceed n")
        if not self.lo <= self.rate <= self.hi:
            raise ValueError("the interval must contain the rate")
        return self

    @classmethod
    def of(cls, k: int, n: int, alpha: float = 0.05) -> Rate:
        k, n = int(k), int(n)
        lo, hi = clopper_pearson(k, n, alpha)
        return cls(k=k, n=n, rate=(k / n if n else 0.0), lo=lo, hi=hi)

    @classmethod
    def pool(cls, rates: list[Rate]) -> Rate:
        """All trials of several rates together (sum of k over sum of n)."""
        return cls.of(sum(r.k for r in rates), sum(r.n for r in rates))

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a [0/0]"
        return f"{_percent(self.rate)}% ({_percent(self.lo)}–{_percent(self.hi)}%) [{self.k}/{self.n}]"

    def __repr__(self) -> str:
        return f"Rate({self})"
