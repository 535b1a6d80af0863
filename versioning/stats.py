"""Statistics for lgmon's A/B test results (DESIGN section 8).

Pure numpy + scipy: no Django imports, so this module can be used (and tested) without a
database. Every comparison is *treatment minus control*.

What is here
============

* Per-variant results: :func:`summarize` (latency count, mean, p50, p95) and
  :func:`summarize_variant` (units, runs, success rate and the latency summary).
* Comparisons, each returning a :class:`Comparison`:

  - :func:`compare_means` for a metric with one value per unit (e.g. per-user mean latency,
    or per-run latency when runs are the unit): Welch's unequal-variance t-test via
    ``scipy.stats.ttest_ind(equal_var=False)`` (Welch 1947; Satterthwaite 1946).
  - :func:`compare_ratios` for a per-unit ratio metric such as the success rate
    (successes / runs, both summed per user). The unit of randomisation is the user, not the
    run, so runs of one user are correlated; the variance comes from the delta method over
    units (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics: A
    Practical Guide with Novel Ideas", KDD 2018). A normal-approximation z-test follows
    (``scipy.stats.norm``).
  - :func:`compare_percentiles` for a latency percentile (p95 by default), with the
    order-statistic standard error of Deng et al. 2018 (their percentile metrics), optionally
    clustered by unit.

  Each comparison also reports the relative lift ``treatment / control - 1`` with a delta-method
  confidence interval (Deng et al. 2018, "percent change": the variance of a ratio of two
  independent means).
* Always-valid inference: :func:`sequential_p_value` (mixture sequential probability ratio test,
  mSPRT, with a normal mixing distribution; Robbins 1970; Johari, Koomen, Pekelis & Walsh 2017,
  "Peeking at A/B Tests: Why it matters, and what to do about it", KDD 2017, and
  Johari, Pekelis & Walsh 2022, "Always Valid Inference", Operations Research 70(3)), the
  matching confidence sequence :func:`sequential_confidence_interval`, and :func:`running`,
  which carries the p-value across looks. This is the approach of Optimizely's Stats Engine;
  GrowthBook and Eppo use the closely related normal-mixture confidence sequences of Howard,
  Ramdas, McAuliffe & Sekhon 2021 ("Time-uniform, nonparametric, nonasymptotic confidence
  sequences", Annals of Statistics 49(2)) and Waudby-Smith et al. 2023 ("Time-uniform central
  limit theory and asymptotic confidence sequences").
* :func:`sample_ratio_mismatch`: Pearson's chi-square goodness-of-fit test of the observed
  assignment counts against the configured weights (``scipy.stats.chisquare``), flagged at
  p < 0.001 (on SRM and why it invalidates results: Fabijan et al. 2019, "Diagnosing Sample
  Ratio Mismatch in Online Controlled Experiments", KDD 2019).
* Decisions: :func:`verdict` ("collecting" until both arms reach a minimum sample, then decided
  by the *sequential* p-value so that peeking is safe) and :func:`guardrail_breached` (the
  treatment is significantly worse on a guardrail metric: roll back).

Why a sequential p-value
========================

The fixed-horizon p-value of a t-test is valid only if it is looked at once, at a sample size
fixed in advance. A dashboard that is refreshed while data accumulates, and an experiment that
stops itself as soon as p < 0.05, look many times: with 20 looks the chance that an A/A test
(no real difference) ever shows p < 0.05 is about 25%, not 5%. The mSPRT p-value is valid at
every sample size *simultaneously*: P(it ever drops below alpha under the null) <= alpha. The
price is power: at a given sample size it needs a larger z-score than the fixed-horizon test
(about 3.0 instead of 1.96 around the sample size the mixture is tuned for, see
:func:`default_tau`).

NaN-free results
================

Nothing returned here is NaN (JSON and the database both dislike NaN). Where a quantity is
undefined the convention is:

* a mean of an empty arm (or a ratio whose denominators sum to 0) is ``None``; so is the
  difference when either mean is ``None``;
* when an arm has fewer than :data:`MIN_UNITS_FOR_INFERENCE` units no variance can be
  estimated: ``p_value`` and ``sequential_p_value`` are 1.0, ``standard_error`` is ``inf``,
  ``difference_ci`` and ``sequential_ci`` are ``(-inf, inf)``, ``relative_lift_ci`` is
  ``None`` and ``tau`` is ``None``;
* ``relative_lift`` (and its interval) is ``None`` when the control mean is 0 or undefined;
* when the estimated variance of the difference is exactly 0 (every unit has the same value in
  each arm) the data are deterministic: a difference of 0 gives p = 1 and the interval (0, 0);
  any other difference gives p = 0 and the interval (d, d), which is the limit of the tests
  as the variance goes to 0.

Infinite interval bounds are valid floats but not valid JSON; serialize them as null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_UNITS",
    "DEFAULT_TARGET_UNITS_PER_ARM",
    "MIN_UNITS_FOR_INFERENCE",
    "SRM_THRESHOLD",
    "Comparison",
    "LatencySummary",
    "Method",
    "SrmResult",
    "VariantSummary",
    "Verdict",
    "compare_means",
    "compare_percentiles",
    "compare_ratios",
    "default_tau",
    "guardrail_breached",
    "mixing_rho",
    "running",
    "sample_ratio_mismatch",
    "sequential_confidence_interval",
    "sequential_p_value",
    "summarize",
    "summarize_variant",
    "verdict",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_ALPHA = 0.05
"""Two-sided significance level of comparisons, verdicts and guardrails."""

SRM_THRESHOLD = 0.001
"""Sample ratio mismatch is flagged below this chi-square p-value (a stricter level than
``DEFAULT_ALPHA`` because the check runs on every experiment at every look, and a real SRM
is usually glaring)."""

DEFAULT_MIN_UNITS = 100
"""Units per arm before :func:`verdict` or :func:`guardrail_breached` decides anything: the
normal approximations behind every test here need a reasonable sample."""

DEFAULT_TARGET_UNITS_PER_ARM = 1000
"""Units per arm at which the default mixing distribution makes the sequential test most
powerful (its confidence sequence tightest); see :func:`default_tau`."""

MIN_UNITS_FOR_INFERENCE = 2
"""Fewer units than this in an arm and no variance can be estimated (p = 1, see module doc)."""

Method = Literal["welch", "delta_ratio", "percentile"]
Verdict = Literal["collecting", "better", "worse", "inconclusive"]

_INFINITE_CI: tuple[float, float] = (-math.inf, math.inf)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Comparison:
    """Treatment versus control on one metric.

    ``difference`` is ``treatment_mean - control_mean``; ``relative_lift`` is
    ``treatment_mean / control_mean - 1``. ``p_value`` and ``difference_ci`` are the
    fixed-horizon (classical) results, valid only for a single look at a pre-planned sample
    size. ``sequential_p_value`` and ``sequential_ci`` are always valid (see
    :func:`sequential_p_value`) and are what ``significant``, :func:`verdict` and
    :func:`guardrail_breached` use. ``standard_error`` is the standard error of
    ``difference``; ``tau`` the standard deviation of the normal mixing distribution of the
    sequential test (on the scale of ``difference``). See the module docstring for the values
    used when something is undefined (never NaN). For :func:`compare_ratios` the arm "means"
    are the ratios ``sum(num) / sum(den)``; for :func:`compare_percentiles` the percentiles.
    ``control_n`` / ``treatment_n`` count the values passed in (units, or runs for
    per-run latencies).
    """

    method: Method
    control_n: int
    treatment_n: int
    control_mean: float | None
    treatment_mean: float | None
    difference: float | None
    standard_error: float
    difference_ci: tuple[float, float]
    relative_lift: float | None
    relative_lift_ci: tuple[float, float] | None
    p_value: float
    sequential_p_value: float
    sequential_ci: tuple[float, float]
    tau: float | None
    alpha: float
    significant: bool


@dataclass(frozen=True)
class SrmResult:
    """Sample ratio mismatch check: chi-square statistic, its p-value and whether it is flagged
    (p < :data:`SRM_THRESHOLD`)."""

    statistic: float
    p_value: float
    flagged: bool


@dataclass(frozen=True)
class LatencySummary:
    """Count, mean, median and 95th percentile of latencies (ms); the three statistics are
    ``None`` when there is no latency."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class VariantSummary:
    """Per-variant result row: units (users), runs, success rate (total successes / total runs,
    ``None`` without runs) and the latency summary."""

    units: int
    runs: int
    success_rate: float | None
    latency: LatencySummary


# --------------------------------------------------------------------------- helpers


def _as_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    """``values`` as a 1-D float64 array; finite values only."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


@lru_cache(maxsize=64)
def _z(alpha: float) -> float:
    """Two-sided standard normal critical value ``z_{1 - alpha/2}``."""
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def _normal_p(difference: float, variance: float) -> float:
    """Two-sided normal-approximation p-value of ``difference`` with the given variance."""
    if variance == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    return float(2.0 * stats.norm.sf(abs(difference) / math.sqrt(variance)))


def _relative_lift(
    mean_c: float | None,
    mean_t: float | None,
    var_c: float | None,
    var_t: float | None,
    crit: float,
) -> tuple[float | None, tuple[float, float] | None]:
    """Relative lift ``mean_t / mean_c - 1`` and its delta-method interval.

    For independent arm estimates with variances ``var_c`` and ``var_t`` (variances of the
    *means*), the first-order Taylor expansion of ``g(c, t) = t / c`` gives
    ``Var(t / c) ~= var_t / c**2 + t**2 * var_c / c**4`` (Deng et al. 2018, percent change).
    """
    if mean_c is None or mean_t is None or mean_c == 0.0:
        return None, None
    lift = mean_t / mean_c - 1.0
    if var_c is None or var_t is None:
        return lift, None
    variance = var_t / mean_c**2 + mean_t**2 * var_c / mean_c**4
    half = crit * math.sqrt(variance)
    return lift, (lift - half, lift + half)


def _undefined(
    method: Method,
    n_c: int,
    n_t: int,
    mean_c: float | None,
    mean_t: float | None,
    alpha: float,
) -> Comparison:
    """The comparison when an arm has too little data for any inference (see module doc)."""
    difference = None if mean_c is None or mean_t is None else mean_t - mean_c
    lift, _ = _relative_lift(mean_c, mean_t, None, None, 0.0)
    return Comparison(
        method=method,
        control_n=n_c,
        treatment_n=n_t,
        control_mean=mean_c,
        treatment_mean=mean_t,
        difference=difference,
        standard_error=math.inf,
        difference_ci=_INFINITE_CI,
        relative_lift=lift,
        relative_lift_ci=None,
        p_value=1.0,
        sequential_p_value=1.0,
        sequential_ci=_INFINITE_CI,
        tau=None,
        alpha=alpha,
        significant=False,
    )


def _comparison(
    method: Method,
    n_c: int,
    n_t: int,
    mean_c: float,
    mean_t: float,
    var_c: float,
    var_t: float,
    *,
    alpha: float,
    tau: float | None,
    p_value: float | None = None,
    difference_ci: tuple[float, float] | None = None,
    crit: float | None = None,
    sizes_for_tau: tuple[int, int] | None = None,
) -> Comparison:
    """Assemble a :class:`Comparison` from the arm means and the variances of those means.

    ``p_value``, ``difference_ci`` and ``crit`` (critical value for the relative-lift interval)
    default to the normal approximation; Welch's test passes its t-based values.
    ``sizes_for_tau`` are the unit counts that calibrate the default mixing distribution.
    """
    difference = mean_t - mean_c
    variance = var_c + var_t
    if crit is None:
        crit = _z(alpha)
    if p_value is None:
        p_value = _normal_p(difference, variance)
    if difference_ci is None:
        half = crit * math.sqrt(variance)
        difference_ci = (difference - half, difference + half)
    if tau is None:
        n_tau_c, n_tau_t = sizes_for_tau if sizes_for_tau is not None else (n_c, n_t)
        tau = default_tau(variance, n_tau_c, n_tau_t, alpha=alpha)
    seq_p = sequential_p_value(difference, variance, tau)
    lift, lift_ci = _relative_lift(mean_c, mean_t, var_c, var_t, crit)
    return Comparison(
        method=method,
        control_n=n_c,
        treatment_n=n_t,
        control_mean=mean_c,
        treatment_mean=mean_t,
        difference=difference,
        standard_error=math.sqrt(variance),
        difference_ci=(float(difference_ci[0]), float(difference_ci[1])),
        relative_lift=lift,
        relative_lift_ci=lift_ci,
        p_value=min(1.0, max(0.0, float(p_value))),
        sequential_p_value=seq_p,
        sequential_ci=sequential_confidence_interval(difference, variance, tau, alpha=alpha),
        tau=tau,
        alpha=alpha,
        significant=seq_p < alpha,
    )


def _check_tau(tau: float | None) -> None:
    if tau is not None and not (math.isfinite(tau) and tau >= 0.0):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")


# --------------------------------------------------------------------------- sequential test


def mixing_rho(target_n: float, *, alpha: float = DEFAULT_ALPHA) -> float:
    """Standard deviation of the normal mixture, per unit of per-observation standard deviation,
    that makes the normal-mixture boundary tightest after ``target_n`` observations.

    ``rho = sqrt((-2 ln(alpha) + ln(1 - 2 ln(alpha))) / target_n)``, the approximately optimal
    mixture of the normal-mixture boundary (Howard et al. 2021; Waudby-Smith et al. 2023, eq.
    161; GrowthBook's ``sequential_tuning_parameter`` is ``target_n``). For alpha = 0.05 the
    numerator is about 7.94.
    """
    _check_alpha(alpha)
    if not target_n > 0:
        raise ValueError(f"target_n must be positive, got {target_n}")
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / target_n)


def default_tau(
    variance: float,
    n_control: int,
    n_treatment: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    target_units_per_arm: int = DEFAULT_TARGET_UNITS_PER_ARM,
) -> float:
    """Default mixing standard deviation ``tau`` for the sequential test of a difference whose
    estimator has variance ``variance`` with ``n_control`` and ``n_treatment`` units.

    The rule is the same for every metric type and is expressed on each metric's own scale:
    ``tau = rho * sigma``, where ``sigma`` is the per-unit standard deviation implied by the
    estimator (``variance = sigma**2 * (1/n_c + 1/n_t)``, so ``sigma**2 = variance * n_eff``
    with ``n_eff = n_c * n_t / (n_c + n_t)``) and ``rho = mixing_rho(target_units_per_arm / 2)``
    (``n_eff`` of an even split with ``target_units_per_arm`` units per arm).

    In words: the prior on the true difference is normal with a standard deviation of about
    ``0.126`` per-unit standard deviations (a "small" standardized effect, Cohen's d ~ 0.13,
    with the defaults), which is the choice that makes the test most powerful when each arm
    has about :data:`DEFAULT_TARGET_UNITS_PER_ARM` units -- a typical size for an A/B test of a
    LangGraph app. Scaling by sigma makes the test invariant to the metric's units
    (milliseconds or seconds, rates or percentages); scaling by the control mean instead would
    break down for error rates near 0 and for metrics whose control mean is 0. The ratio
    ``tau**2 / variance = rho**2 * n_eff`` then depends only on the sample sizes, so at the
    target the test needs ``|z| ~ 3.0`` (alpha = 0.05), at 100 units per arm ``|z| ~ 3.9``, at
    10,000 per arm ``|z| ~ 3.2``. The validity of the sequential p-value does not depend on
    this choice; only its power does.

    ``sigma`` is a plug-in estimate, as ``variance`` is in Johari et al. 2017; both converge as
    data accumulate.
    """
    if n_control <= 0 or n_treatment <= 0:
        raise ValueError("default_tau needs at least one unit in each arm")
    if not (math.isfinite(variance) and variance >= 0.0):
        raise ValueError(f"variance must be finite and >= 0, got {variance}")
    n_eff = n_control * n_treatment / (n_control + n_treatment)
    rho = mixing_rho(target_units_per_arm / 2.0, alpha=alpha)
    return rho * math.sqrt(variance * n_eff)


def _log_likelihood_ratio(difference: float, variance: float, tau: float) -> float:
    """``log Lambda`` of the normal-mixture SPRT; ``variance > 0`` and ``tau > 0``."""
    r = tau * tau / variance
    z2 = difference * difference / variance
    if math.isinf(r):
        # tau**2 / variance overflowed: Lambda ~ sqrt(1/r) * exp(z2 / 2) -> 0 unless z2 is huge.
        return -0.5 * math.log(tau * tau) + 0.5 * math.log(variance) + 0.5 * z2
    return -0.5 * math.log1p(r) + 0.5 * z2 * (r / (1.0 + r))


def sequential_p_value(difference: float, variance: float, tau: float) -> float:
    """Always-valid p-value of ``H0: true difference = 0`` from the normal-mixture SPRT.

    The estimate ``d`` of the difference is (asymptotically) normal, ``d ~ N(theta, V)``.
    Mixing the likelihood ratio of ``theta`` against 0 over the prior ``theta ~ N(0, tau**2)``
    gives the closed form (Robbins 1970; Johari et al. 2017, 2022)::

        Lambda = sqrt(V / (V + tau**2)) * exp(tau**2 * d**2 / (2 * V * (V + tau**2)))

    which is the ratio of the marginal densities ``N(d; 0, V + tau**2) / N(d; 0, V)``. Under H0
    ``Lambda`` is a nonnegative martingale with mean 1, so by Ville's inequality
    ``P(Lambda_n >= 1/alpha for some n) <= alpha``: the p-value ``min(1, 1/Lambda)`` can be
    checked after every new observation without inflating the false-positive rate.

    This returns the p-value of *one* look. A caller that looks repeatedly must carry the
    running minimum over its looks, ``p_n = min(p_{n-1}, 1/Lambda_n)`` (see :func:`running`):
    it is that running minimum which is always valid, and once it is below alpha the null is
    rejected for good. ``variance`` is the variance of the estimator ``d`` (squared standard
    error), ``tau`` the mixing standard deviation on the same scale as ``d``
    (see :func:`default_tau`). Edge cases: ``tau == 0`` gives 1.0 (the mixture is the null);
    ``variance == 0`` gives 1.0 when ``difference == 0`` and 0.0 otherwise.
    """
    if not math.isfinite(difference):
        raise ValueError(f"difference must be finite, got {difference}")
    if not (math.isfinite(variance) and variance >= 0.0):
        raise ValueError(f"variance must be finite and >= 0, got {variance}")
    _check_tau(tau)
    if variance == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    if tau == 0.0:
        return 1.0
    log_lambda = _log_likelihood_ratio(difference, variance, tau)
    if log_lambda <= 0.0:
        return 1.0
    return math.exp(-log_lambda)


def sequential_confidence_interval(
    difference: float, variance: float, tau: float, *, alpha: float = DEFAULT_ALPHA
) -> tuple[float, float]:
    """Always-valid confidence interval (one look of a confidence sequence) for the difference.

    It is the set of ``theta`` not rejected by the mSPRT of ``H0: difference = theta``, i.e.
    ``|d - theta| < sqrt(V * (V + tau**2) / tau**2 * (2 ln(1/alpha) + ln(1 + tau**2 / V)))``
    (Johari et al. 2022; Howard et al. 2021). 0 lies outside it exactly when
    :func:`sequential_p_value` is below alpha. Across looks the valid interval is the
    intersection of the per-look intervals. Edge cases: ``tau == 0`` gives ``(-inf, inf)``,
    ``variance == 0`` gives ``(d, d)``.
    """
    _check_alpha(alpha)
    _check_tau(tau)
    if not (math.isfinite(variance) and variance >= 0.0):
        raise ValueError(f"variance must be finite and >= 0, got {variance}")
    if variance == 0.0:
        return (difference, difference)
    if tau == 0.0:
        return _INFINITE_CI
    r = tau * tau / variance
    half = math.sqrt(variance * (1.0 + 1.0 / r) * (2.0 * math.log(1.0 / alpha) + math.log1p(r)))
    return (difference - half, difference + half)


def running(previous: float | None, current: float) -> float:
    """The always-valid p-value after a new look: ``min(previous, current)``.

    ``previous`` is the running value from earlier looks (``None`` at the first look);
    ``current`` is :attr:`Comparison.sequential_p_value` of this look. Store the result and
    pass it back next time (Johari et al. 2017: ``p_n = min(p_{n-1}, 1/Lambda_n)``).
    """
    return current if previous is None else min(previous, current)


# --------------------------------------------------------------------------- comparisons


def compare_means(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    tau: float | None = None,
) -> Comparison:
    """Compare the means of a metric with one value per unit (e.g. latency in ms).

    Fixed-horizon: Welch's unequal-variance t-test, ``scipy.stats.ttest_ind(treatment, control,
    equal_var=False)``; the interval for the difference is the test's own
    ``confidence_interval(1 - alpha)`` (t quantile with Welch-Satterthwaite degrees of freedom).
    When one arm is constant the same test is computed from the formulas (``scipy.stats.t``
    with :func:`_welch_df`), since scipy warns about constant samples. The relative lift uses
    the delta method with the same t critical value.

    Sequential: :func:`sequential_p_value` with ``V = s_c**2 / n_c + s_t**2 / n_t`` (the
    squared Welch standard error, sample variances with ddof=1) and ``tau`` from
    :func:`default_tau` unless given.

    Each arm needs :data:`MIN_UNITS_FOR_INFERENCE` values for inference (see module doc).
    """
    _check_alpha(alpha)
    _check_tau(tau)
    c = _as_1d(control, "control")
    t = _as_1d(treatment, "treatment")
    n_c, n_t = c.size, t.size
    mean_c = float(c.mean()) if n_c else None
    mean_t = float(t.mean()) if n_t else None
    if n_c < MIN_UNITS_FOR_INFERENCE or n_t < MIN_UNITS_FOR_INFERENCE:
        return _undefined("welch", n_c, n_t, mean_c, mean_t, alpha)
    assert mean_c is not None and mean_t is not None
    var_c = float(c.var(ddof=1)) / n_c
    var_t = float(t.var(ddof=1)) / n_t
    if var_c + var_t == 0.0:
        # Both arms constant: Welch's t is 0/0 or +-inf; use the deterministic limit.
        return _comparison("welch", n_c, n_t, mean_c, mean_t, 0.0, 0.0, alpha=alpha, tau=tau)
    # With one constant arm Welch's formulas are still exact, but scipy warns of "precision
    # loss"; that case (and scipy < 1.11, without confidence_interval) writes the test out.
    result = stats.ttest_ind(t, c, equal_var=False) if var_c > 0.0 and var_t > 0.0 else None
    difference_ci: tuple[float, float] | None = None
    if result is not None and hasattr(result, "confidence_interval"):
        p_value = float(result.pvalue)
        df = float(result.df)
        ci = result.confidence_interval(confidence_level=1.0 - alpha)
        difference_ci = (float(ci.low), float(ci.high))
    else:
        df = _welch_df(var_c, var_t, n_c, n_t)
        t_stat = (mean_t - mean_c) / math.sqrt(var_c + var_t)
        p_value = float(2.0 * stats.t.sf(abs(t_stat), df))
    return _comparison(
        "welch",
        n_c,
        n_t,
        mean_c,
        mean_t,
        var_c,
        var_t,
        alpha=alpha,
        tau=tau,
        p_value=p_value,
        difference_ci=difference_ci,  # None: difference -+ crit * standard error
        crit=float(stats.t.ppf(1.0 - alpha / 2.0, df)),
    )


def _welch_df(var_c: float, var_t: float, n_c: int, n_t: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the variances of the two means
    (``var_c = s_c**2 / n_c``, ``var_t = s_t**2 / n_t``)."""
    return (var_c + var_t) ** 2 / (var_c**2 / (n_c - 1) + var_t**2 / (n_t - 1))


def _ratio_mean_and_variance(num: FloatArray, den: FloatArray) -> tuple[float | None, float]:
    """``R = sum(num) / sum(den)`` and the delta-method variance of R over units.

    With per-unit pairs ``(x_i, y_i)``, ``R = mean(x) / mean(y)`` and, to first order
    (Deng et al. 2018)::

        Var(R) ~= (s_xx - 2 R s_xy + R**2 s_yy) / (n * mean(y)**2)
               = Var(x_i - R y_i) / (n * mean(y)**2)

    computed here in the second (linearized) form. Moments use ddof=0, so with one run per unit
    (y_i = 1) this is exactly the binomial ``p (1 - p) / n`` of the Wald two-proportion test.
    """
    n = num.size
    total_den = float(den.sum())
    if n == 0 or total_den == 0.0:
        return None, 0.0
    ratio = float(num.sum()) / total_den
    mean_den = total_den / n
    linearized = num - ratio * den
    variance = float(linearized.var()) / (n * mean_den**2)
    return ratio, max(variance, 0.0)


def compare_ratios(
    control_num: npt.ArrayLike,
    control_den: npt.ArrayLike,
    treatment_num: npt.ArrayLike,
    treatment_den: npt.ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    tau: float | None = None,
) -> Comparison:
    """Compare a ratio metric computed per unit, e.g. the success rate.

    Each array holds one value per unit (user): for the success rate ``*_num`` is the user's
    successes and ``*_den`` the user's runs. The arm's metric is ``sum(num) / sum(den)`` (total
    successes over total runs), and because the unit of randomisation is the user, the runs of
    one user are not independent: the variance is the delta-method variance over units
    (:func:`_ratio_mean_and_variance`; Deng et al. 2018). Treating runs as independent
    Bernoulli trials would understate the variance whenever users differ.

    Fixed-horizon: two-sided z-test and normal interval (``scipy.stats.norm``); with one run per
    unit this is exactly the unpooled (Wald) two-proportion z-test. Sequential:
    :func:`sequential_p_value` with the same variance and ``tau`` from :func:`default_tau`
    unless given.

    An arm needs :data:`MIN_UNITS_FOR_INFERENCE` units and a positive denominator total for
    inference (see module doc).
    """
    _check_alpha(alpha)
    _check_tau(tau)
    arms = []
    for name, num_values, den_values in (
        ("control", control_num, control_den),
        ("treatment", treatment_num, treatment_den),
    ):
        num = _as_1d(num_values, f"{name}_num")
        den = _as_1d(den_values, f"{name}_den")
        if num.shape != den.shape:
            raise ValueError(f"{name}_num and {name}_den must have the same length")
        if np.any(den < 0):
            raise ValueError(f"{name}_den must be >= 0")
        arms.append((num.size, *_ratio_mean_and_variance(num, den)))
    (n_c, mean_c, var_c), (n_t, mean_t, var_t) = arms
    if (
        n_c < MIN_UNITS_FOR_INFERENCE
        or n_t < MIN_UNITS_FOR_INFERENCE
        or mean_c is None
        or mean_t is None
    ):
        return _undefined("delta_ratio", n_c, n_t, mean_c, mean_t, alpha)
    return _comparison("delta_ratio", n_c, n_t, mean_c, mean_t, var_c, var_t, alpha=alpha, tau=tau)


def _percentile_and_variance(
    values: FloatArray, groups: npt.NDArray[Any] | None, percentile: float, z: float
) -> tuple[float, float, int]:
    """Sample percentile, the variance of that estimate and the number of units.

    Deng et al. 2018 (percentile metrics): the empirical CDF at the true quantile,
    ``F_n(xi_q)``, is a mean of indicators with variance ``sigma_F**2`` -- ``q (1 - q) / n``
    for independent observations; for observations clustered in units (runs of a user), the
    delta-method variance of the per-unit ratio ``sum(1[x <= xi_q]) / runs``. The interval
    ``[X_(L), X_(U)]`` between the order statistics of ranks ``n (q -+ z sigma_F)`` covers the
    quantile with probability ~ 1 - alpha, so its width estimates ``2 z`` standard errors of the
    sample quantile (that is ``sigma_F / f(xi_q)``, without estimating the density ``f``).
    """
    n = values.size
    q = percentile / 100.0
    estimate = float(np.percentile(values, percentile))
    if groups is None:
        var_f = q * (1.0 - q) / n
        units = n
    else:
        _, inverse = np.unique(groups, return_inverse=True)
        below = np.bincount(inverse, weights=(values <= estimate)).astype(np.float64)
        runs = np.bincount(inverse).astype(np.float64)
        _, var_f = _ratio_mean_and_variance(below, runs)
        units = runs.size
    half_ranks = z * math.sqrt(var_f) * n
    low_rank = min(max(math.floor(n * q - half_ranks), 1), n)
    high_rank = min(max(math.ceil(n * q + half_ranks), 1), n)
    ordered = np.sort(values)
    se = float(ordered[high_rank - 1] - ordered[low_rank - 1]) / (2.0 * z)
    return estimate, se * se, units


def compare_percentiles(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    percentile: float = 95.0,
    control_units: npt.ArrayLike | None = None,
    treatment_units: npt.ArrayLike | None = None,
    alpha: float = DEFAULT_ALPHA,
    tau: float | None = None,
) -> Comparison:
    """Compare a percentile (p95 by default) of per-observation values, e.g. run latencies.

    The percentile is ``numpy.percentile`` (linear interpolation, as in :func:`summarize`).
    Its standard error comes from the order-statistic interval of Deng et al. 2018
    (:func:`_percentile_and_variance`); pass ``control_units`` / ``treatment_units`` (the unit
    id of each observation, e.g. the user of each run) to account for the clustering of runs
    within users. The difference of the two independent percentiles is tested with a z-test and
    sequentially with :func:`sequential_p_value` (default ``tau`` calibrated on the number of
    units). Tail percentiles need enough observations for the upper rank to fall inside the
    sample: about ``n (1 - q) >= 10``, i.e. 200 runs per arm for p95.
    """
    _check_alpha(alpha)
    _check_tau(tau)
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    c = _as_1d(control, "control")
    t = _as_1d(treatment, "treatment")
    groups: list[npt.NDArray[Any] | None] = []
    for name, arm, unit_ids in (
        ("control_units", c, control_units),
        ("treatment_units", t, treatment_units),
    ):
        if unit_ids is None:
            groups.append(None)
            continue
        ids = np.asarray(unit_ids)
        if ids.shape != arm.shape:
            raise ValueError(f"{name} must have one unit id per observation")
        groups.append(ids)
    n_c, n_t = c.size, t.size
    if n_c < MIN_UNITS_FOR_INFERENCE or n_t < MIN_UNITS_FOR_INFERENCE:
        mean_c = float(np.percentile(c, percentile)) if n_c else None
        mean_t = float(np.percentile(t, percentile)) if n_t else None
        return _undefined("percentile", n_c, n_t, mean_c, mean_t, alpha)
    z = _z(alpha)
    est_c, var_c, units_c = _percentile_and_variance(c, groups[0], percentile, z)
    est_t, var_t, units_t = _percentile_and_variance(t, groups[1], percentile, z)
    return _comparison(
        "percentile",
        n_c,
        n_t,
        est_c,
        est_t,
        var_c,
        var_t,
        alpha=alpha,
        tau=tau,
        sizes_for_tau=(units_c, units_t),
    )


# --------------------------------------------------------------------------- SRM, summaries


def sample_ratio_mismatch(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square goodness-of-fit test of assignment counts against the configured weights.

    ``observed[i]`` is the number of units assigned to variant ``i``, ``weights[i]`` its
    configured traffic weight (any positive scale; normalized here). The expected counts are
    ``total * weight / sum(weights)``; ``scipy.stats.chisquare`` gives the p-value with
    ``k - 1`` degrees of freedom. Flagged when ``p < threshold`` (0.001 by default; Fabijan et
    al. 2019). A total of 0 is not flagged (p 1.0); so is a single variant with a positive
    weight. Units in a variant whose weight is 0 are an outright mismatch: p 0.0, flagged.
    """
    counts = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(weights, dtype=np.float64)
    if counts.ndim != 1 or counts.shape != shares.shape:
        raise ValueError("observed and weights must be sequences of the same length")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("observed counts must be finite and >= 0")
    if np.any(shares < 0) or not np.all(np.isfinite(shares)) or shares.sum() <= 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    total = float(counts.sum())
    if total == 0.0:
        return SrmResult(statistic=0.0, p_value=1.0, flagged=False)
    active = shares > 0
    if np.any(counts[~active] > 0):
        return SrmResult(statistic=math.inf, p_value=0.0, flagged=True)
    if int(active.sum()) < 2:
        return SrmResult(statistic=0.0, p_value=1.0, flagged=False)
    expected = total * shares[active] / shares[active].sum()
    result = stats.chisquare(counts[active], f_exp=expected)
    p_value = float(result.pvalue)
    return SrmResult(
        statistic=float(result.statistic), p_value=p_value, flagged=p_value < threshold
    )


def summarize(latencies_ms: npt.ArrayLike) -> LatencySummary:
    """Count, mean, p50 and p95 of latencies (``numpy.percentile``, linear interpolation);
    mean and percentiles are ``None`` when there are none."""
    values = _as_1d(latencies_ms, "latencies_ms")
    if values.size == 0:
        return LatencySummary(count=0, mean=None, p50=None, p95=None)
    p50, p95 = np.percentile(values, [50.0, 95.0])
    return LatencySummary(
        count=int(values.size), mean=float(values.mean()), p50=float(p50), p95=float(p95)
    )


def summarize_variant(
    successes_per_unit: npt.ArrayLike,
    runs_per_unit: npt.ArrayLike,
    latencies_ms: npt.ArrayLike,
) -> VariantSummary:
    """The per-variant result row of DESIGN section 8: units, runs, success rate, latency.

    ``successes_per_unit`` and ``runs_per_unit`` hold one value per unit (as for
    :func:`compare_ratios`); ``latencies_ms`` one value per run.
    """
    successes = _as_1d(successes_per_unit, "successes_per_unit")
    runs = _as_1d(runs_per_unit, "runs_per_unit")
    if successes.shape != runs.shape:
        raise ValueError("successes_per_unit and runs_per_unit must have the same length")
    total_runs = float(runs.sum())
    return VariantSummary(
        units=int(runs.size),
        runs=round(total_runs),
        success_rate=float(successes.sum()) / total_runs if total_runs > 0 else None,
        latency=summarize(latencies_ms),
    )


# --------------------------------------------------------------------------- decisions


def verdict(
    comparison: Comparison,
    units_control: int,
    units_treatment: int,
    *,
    min_units: int = DEFAULT_MIN_UNITS,
    higher_is_better: bool = True,
    previous_p_value: float | None = None,
) -> Verdict:
    """Decision for the treatment on one metric.

    "collecting" until both arms have ``min_units`` units (the minimum sample before any
    verdict); then "better" or "worse" when the always-valid p-value is below
    ``comparison.alpha`` (direction from the sign of the difference and ``higher_is_better``),
    else "inconclusive". The always-valid p-value is ``comparison.sequential_p_value``, or its
    running minimum with ``previous_p_value`` (the value carried from earlier looks, see
    :func:`running`). Because it is the sequential p-value, this may be called at every look.
    """
    if units_control < min_units or units_treatment < min_units:
        return "collecting"
    p_value = running(previous_p_value, comparison.sequential_p_value)
    difference = comparison.difference
    if p_value >= comparison.alpha or difference is None or difference == 0.0:
        return "inconclusive"
    return "better" if (difference > 0.0) == higher_is_better else "worse"


def guardrail_breached(
    comparison: Comparison,
    units_control: int,
    units_treatment: int,
    *,
    min_units: int = DEFAULT_MIN_UNITS,
    higher_is_worse: bool = True,
    previous_p_value: float | None = None,
) -> bool:
    """True when the treatment is significantly worse on a guardrail metric: roll back.

    Significance is the sequential (always-valid) test, so the guardrail may be evaluated at
    every look without inflating false rollbacks; ``min_units`` per arm are required first.
    ``higher_is_worse`` is True for an error rate (:func:`compare_ratios` on errors / runs) and
    for latency (:func:`compare_means` on latencies, :func:`compare_percentiles` for p95); pass
    False for a success rate.
    """
    decision = verdict(
        comparison,
        units_control,
        units_treatment,
        min_units=min_units,
        higher_is_better=not higher_is_worse,
        previous_p_value=previous_p_value,
    )
    return decision == "worse"
