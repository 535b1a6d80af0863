"""Tests of versioning.stats: reference values from scipy and hand computations, the A/A
false-positive rate of the sequential test under repeated looks, power, and edge cases.
Plain pytest, no database."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from versioning import stats

# --------------------------------------------------------------------------- Welch


def test_compare_means_matches_scipy_welch() -> None:
    control = np.array([112.0, 98.5, 130.2, 101.7, 95.3, 120.9, 143.1, 88.8, 105.5, 99.9])
    treatment = np.array([125.4, 131.9, 118.2, 150.3, 122.8, 139.6, 128.8, 160.1])
    result = stats.compare_means(control, treatment)

    reference = sps.ttest_ind(treatment, control, equal_var=False)
    ci = reference.confidence_interval(confidence_level=0.95)
    assert result.method == "welch"
    assert result.p_value == pytest.approx(float(reference.pvalue), rel=1e-12)
    assert result.difference_ci[0] == pytest.approx(float(ci.low), rel=1e-12)
    assert result.difference_ci[1] == pytest.approx(float(ci.high), rel=1e-12)
    assert result.difference == pytest.approx(treatment.mean() - control.mean())
    se = math.sqrt(control.var(ddof=1) / 10 + treatment.var(ddof=1) / 8)
    assert result.standard_error == pytest.approx(se)
    assert (result.control_n, result.treatment_n) == (10, 8)

    # alpha changes the interval level.
    narrow = stats.compare_means(control, treatment, alpha=0.2)
    ci80 = reference.confidence_interval(confidence_level=0.8)
    assert narrow.difference_ci == pytest.approx((float(ci80.low), float(ci80.high)))
    assert narrow.alpha == 0.2


def test_compare_means_hand_computed() -> None:
    # control: mean 2.5, s^2 = 5/3; treatment: mean 5, s^2 = 20/3; n = 4 each.
    # V = 5/12 + 20/12 = 25/12, t = 2.5 / sqrt(25/12) = sqrt(3),
    # Welch-Satterthwaite df = V^2 / ((5/12)^2/3 + (20/12)^2/3) = 75/17.
    result = stats.compare_means([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert result.control_mean == 2.5
    assert result.treatment_mean == 5.0
    assert result.difference == 2.5
    assert result.standard_error == pytest.approx(math.sqrt(25 / 12))
    df = 75 / 17
    assert stats._welch_df(5 / 12, 20 / 12, 4, 4) == pytest.approx(df)
    assert result.p_value == pytest.approx(2 * sps.t.sf(math.sqrt(3), df), rel=1e-10)
    assert result.p_value == pytest.approx(0.1515805048, rel=1e-8)
    half = sps.t.ppf(0.975, df) * math.sqrt(25 / 12)
    assert result.difference_ci == pytest.approx((2.5 - half, 2.5 + half), rel=1e-10)
    assert result.difference_ci == pytest.approx((-1.3641672155, 6.3641672155), rel=1e-9)

    # Relative lift 5/2.5 - 1 = 1, delta method: Var = V_t/c^2 + t^2 V_c / c^4.
    assert result.relative_lift == 1.0
    lift_se = math.sqrt((20 / 12) / 2.5**2 + 5.0**2 * (5 / 12) / 2.5**4)
    crit = sps.t.ppf(0.975, df)
    assert result.relative_lift_ci == pytest.approx((1 - crit * lift_se, 1 + crit * lift_se))
    assert not result.significant  # neither the sequential nor the fixed test rejects


# --------------------------------------------------------------------------- ratio metrics


def test_compare_ratios_matches_direct_delta_method() -> None:
    # Successes and runs per user.
    c_num = np.array([3.0, 0.0, 5.0, 2.0, 1.0, 4.0])
    c_den = np.array([4.0, 1.0, 5.0, 3.0, 2.0, 6.0])
    t_num = np.array([2.0, 2.0, 7.0, 1.0, 3.0])
    t_den = np.array([2.0, 3.0, 8.0, 1.0, 3.0])
    result = stats.compare_ratios(c_num, c_den, t_num, t_den)

    def delta_variance(x: list[float], y: list[float]) -> tuple[float, float]:
        # Deng et al. 2018: Var(mean(x)/mean(y)) ~= (1/n) [s_xx/mu_y^2 - 2 mu_x s_xy/mu_y^3
        #                                                  + mu_x^2 s_yy/mu_y^4]
        n = len(x)
        mu_x, mu_y = sum(x) / n, sum(y) / n
        s_xx = sum((a - mu_x) ** 2 for a in x) / n
        s_yy = sum((b - mu_y) ** 2 for b in y) / n
        s_xy = sum((a - mu_x) * (b - mu_y) for a, b in zip(x, y, strict=True)) / n
        var = (s_xx / mu_y**2 - 2 * mu_x * s_xy / mu_y**3 + mu_x**2 * s_yy / mu_y**4) / n
        return mu_x / mu_y, var

    r_c, v_c = delta_variance(list(c_num), list(c_den))
    r_t, v_t = delta_variance(list(t_num), list(t_den))
    assert result.method == "delta_ratio"
    assert result.control_mean == pytest.approx(15 / 21)
    assert result.control_mean == pytest.approx(r_c)
    assert result.treatment_mean == pytest.approx(15 / 17)
    assert result.treatment_mean == pytest.approx(r_t)
    se = math.sqrt(v_c + v_t)
    assert result.standard_error == pytest.approx(se, rel=1e-12)
    d = r_t - r_c
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(d) / se), rel=1e-10)
    z = sps.norm.ppf(0.975)
    assert result.difference_ci == pytest.approx((d - z * se, d + z * se), rel=1e-10)
    lift_se = math.sqrt(v_t / r_c**2 + r_t**2 * v_c / r_c**4)
    assert result.relative_lift == pytest.approx(r_t / r_c - 1)
    assert result.relative_lift_ci == pytest.approx(
        (r_t / r_c - 1 - z * lift_se, r_t / r_c - 1 + z * lift_se)
    )


def test_one_run_per_unit_is_the_two_proportion_z_test() -> None:
    rng = np.random.default_rng(7)
    control = rng.binomial(1, 0.80, size=1500).astype(float)
    treatment = rng.binomial(1, 0.83, size=1300).astype(float)
    result = stats.compare_ratios(
        control, np.ones_like(control), treatment, np.ones_like(treatment)
    )
    p_c, p_t = control.mean(), treatment.mean()
    se = math.sqrt(p_c * (1 - p_c) / 1500 + p_t * (1 - p_t) / 1300)  # unpooled (Wald)
    z = (p_t - p_c) / se
    assert result.standard_error == pytest.approx(se, rel=1e-9)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    crit = sps.norm.ppf(0.975)
    assert result.difference_ci == pytest.approx(
        (p_t - p_c - crit * se, p_t - p_c + crit * se), rel=1e-9
    )


def test_clustered_runs_widen_the_ratio_interval() -> None:
    # Users differ a lot in success rate: treating runs as independent Bernoulli trials would
    # understate the variance; the per-user delta method does not.
    rng = np.random.default_rng(11)
    runs = rng.integers(1, 20, size=400).astype(float)
    p = rng.choice([0.2, 0.95], size=400)
    successes = rng.binomial(runs.astype(int), p).astype(float)
    result = stats.compare_ratios(successes[:200], runs[:200], successes[200:], runs[200:])
    rate_c = successes[:200].sum() / runs[:200].sum()
    rate_t = successes[200:].sum() / runs[200:].sum()
    naive_se = math.sqrt(
        rate_c * (1 - rate_c) / runs[:200].sum() + rate_t * (1 - rate_t) / runs[200:].sum()
    )
    assert result.standard_error > 2 * naive_se


# --------------------------------------------------------------------------- percentiles


def test_compare_percentiles_order_statistic_standard_error() -> None:
    rng = np.random.default_rng(3)
    control = rng.lognormal(6.0, 0.5, size=400)
    treatment = rng.lognormal(6.1, 0.5, size=500)
    result = stats.compare_percentiles(control, treatment)

    z = sps.norm.ppf(0.975)

    def quantile_var(x: np.ndarray) -> float:
        n = len(x)
        half = z * math.sqrt(0.95 * 0.05 / n) * n
        lo, hi = math.floor(0.95 * n - half), math.ceil(0.95 * n + half)
        ordered = np.sort(x)
        return float((ordered[hi - 1] - ordered[lo - 1]) / (2 * z)) ** 2

    assert result.method == "percentile"
    assert result.control_mean == pytest.approx(np.percentile(control, 95))
    assert result.treatment_mean == pytest.approx(np.percentile(treatment, 95))
    se = math.sqrt(quantile_var(control) + quantile_var(treatment))
    assert result.standard_error == pytest.approx(se)
    d = result.treatment_mean - result.control_mean  # type: ignore[operator]
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(d) / se))

    # The order-statistic SE agrees with the asymptotic sqrt(q(1-q)/n)/f(xi_q) for a lognormal.
    big = rng.lognormal(6.0, 0.5, size=20000)
    xi = math.exp(6.0 + 0.5 * sps.norm.ppf(0.95))
    density = sps.lognorm.pdf(xi, 0.5, scale=math.exp(6.0))
    asymptotic = math.sqrt(0.95 * 0.05 / 20000) / density
    assert math.sqrt(quantile_var(big)) == pytest.approx(asymptotic, rel=0.15)


def test_compare_percentiles_clustered_by_unit() -> None:
    rng = np.random.default_rng(5)
    latencies = rng.lognormal(6.0, 0.5, size=600)
    # One run per unit: the clustered variance is the binomial one up to F_n(estimate) ~ q.
    plain = stats.compare_percentiles(latencies[:300], latencies[300:])
    singletons = stats.compare_percentiles(
        latencies[:300],
        latencies[300:],
        control_units=np.arange(300),
        treatment_units=np.arange(300, 600),
    )
    assert singletons.standard_error == pytest.approx(plain.standard_error, rel=0.25)
    # Slow users: all runs of a user share its speed, so clustering widens the interval.
    users = np.repeat(np.arange(60), 10)
    speed = np.repeat(rng.lognormal(0.0, 0.6, size=60), 10)
    clustered = latencies * speed
    with_units = stats.compare_percentiles(
        clustered[:300], clustered[300:], control_units=users[:300], treatment_units=users[300:]
    )
    without = stats.compare_percentiles(clustered[:300], clustered[300:])
    assert with_units.standard_error > without.standard_error
    with pytest.raises(ValueError, match="one unit id per observation"):
        stats.compare_percentiles(latencies, latencies, control_units=[1, 2])


# --------------------------------------------------------------------------- sequential test


def test_sequential_p_value_is_the_normal_mixture_likelihood_ratio() -> None:
    d, v, tau = 0.8, 0.09, 0.5
    closed = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * d**2 / (2 * v * (v + tau**2)))
    # Lambda = integral of N(d; theta, V) N(theta; 0, tau^2) dtheta / N(d; 0, V)
    numerator, _ = integrate.quad(
        lambda theta: sps.norm.pdf(d, theta, math.sqrt(v)) * sps.norm.pdf(theta, 0, tau),
        -10,
        10,
    )
    numeric = numerator / sps.norm.pdf(d, 0, math.sqrt(v))
    assert numeric == pytest.approx(closed, rel=1e-8)
    assert stats.sequential_p_value(d, v, tau) == pytest.approx(1 / closed, rel=1e-12)
    assert stats.sequential_p_value(-d, v, tau) == stats.sequential_p_value(d, v, tau)
    # Small evidence: Lambda < 1 gives p = 1.
    assert stats.sequential_p_value(0.1, v, tau) == 1.0
    # Huge evidence underflows to 0 without an overflow error.
    assert stats.sequential_p_value(1e3, 1e-6, 1.0) == 0.0
    # Degenerate cases.
    assert stats.sequential_p_value(0.3, v, 0.0) == 1.0
    assert stats.sequential_p_value(0.0, 0.0, tau) == 1.0
    assert stats.sequential_p_value(0.3, 0.0, tau) == 0.0
    with pytest.raises(ValueError):
        stats.sequential_p_value(0.3, -1.0, tau)
    with pytest.raises(ValueError):
        stats.sequential_p_value(math.nan, v, tau)


def test_sequential_interval_inverts_the_sequential_test() -> None:
    v, tau = 0.04, 0.3
    low, high = stats.sequential_confidence_interval(0.0, v, tau)
    assert low == pytest.approx(-high)
    # At the boundary the p-value is exactly alpha; inside it is above, outside below.
    assert stats.sequential_p_value(high, v, tau) == pytest.approx(0.05)
    assert stats.sequential_p_value(high * 0.99, v, tau) > 0.05
    assert stats.sequential_p_value(high * 1.01, v, tau) < 0.05
    # It is wider than the fixed-horizon interval.
    assert high > sps.norm.ppf(0.975) * math.sqrt(v)
    assert stats.sequential_confidence_interval(1.0, v, 0.0) == (-math.inf, math.inf)
    assert stats.sequential_confidence_interval(1.0, 0.0, tau) == (1.0, 1.0)


def test_running_keeps_the_minimum() -> None:
    assert stats.running(None, 0.4) == 0.4
    assert stats.running(0.4, 0.7) == 0.4
    assert stats.running(0.4, 0.01) == 0.01


def test_default_tau_rule() -> None:
    rho = stats.mixing_rho(500)
    assert rho == pytest.approx(
        math.sqrt((-2 * math.log(0.05) + math.log(1 - 2 * math.log(0.05))) / 500)
    )
    assert rho == pytest.approx(0.126, abs=1e-3)
    # sigma = 2 per unit, 1000 units per arm: V = 4 * (2/1000), tau = rho * sigma.
    assert stats.default_tau(4 * 2 / 1000, 1000, 1000) == pytest.approx(2 * rho)
    # tau^2 / V = rho^2 * n_eff depends only on the sample sizes, not the metric's scale.
    for scale in (1e-3, 1.0, 1e4):
        v = scale**2 * (1 / 300 + 1 / 700)
        tau = stats.default_tau(v, 300, 700)
        assert tau**2 / v == pytest.approx(rho**2 * 300 * 700 / 1000)
    # The z-score needed for significance at the target size is about 3.
    v = 2 / 1000
    tau = stats.default_tau(v, 1000, 1000)
    z_needed = stats.sequential_confidence_interval(0.0, v, tau)[1] / math.sqrt(v)
    assert 2.9 < z_needed < 3.1


def test_aa_peeking_sequential_stays_valid_naive_does_not() -> None:
    """400 A/A experiments on the success rate (users with 1-5 runs and heterogeneous success
    probabilities), each looked at 20 times as units arrive (50 more per arm per look)."""
    rng = np.random.default_rng(20240601)
    experiments, looks, step = 400, 20, 50
    size = looks * step
    sequential_rejections = naive_rejections = 0
    for _ in range(experiments):
        runs = rng.integers(1, 6, size=(2, size)).astype(float)
        rate = rng.beta(8, 2, size=(2, size))
        successes = rng.binomial(runs.astype(int), rate).astype(float)
        running_p: float | None = None
        naive = False
        for look in range(1, looks + 1):
            n = look * step
            result = stats.compare_ratios(
                successes[0, :n], runs[0, :n], successes[1, :n], runs[1, :n]
            )
            running_p = stats.running(running_p, result.sequential_p_value)
            naive = naive or result.p_value < 0.05
        assert running_p is not None
        sequential_rejections += running_p < 0.05
        naive_rejections += naive
    sequential_rate = sequential_rejections / experiments
    naive_rate = naive_rejections / experiments
    assert sequential_rate <= 0.08  # measured: 0.010
    assert naive_rate > 0.12  # measured: 0.2425


def test_aa_peeking_on_latency_means() -> None:
    """The same property for Welch + mSPRT on skewed (lognormal) latencies; fewer
    experiments because ttest_ind is slower."""
    rng = np.random.default_rng(99)
    experiments, looks, step = 120, 10, 100
    sequential_rejections = naive_rejections = 0
    for _ in range(experiments):
        latencies = rng.lognormal(7.0, 0.8, size=(2, looks * step))
        running_p: float | None = None
        naive = False
        for look in range(1, looks + 1):
            n = look * step
            result = stats.compare_means(latencies[0, :n], latencies[1, :n])
            running_p = stats.running(running_p, result.sequential_p_value)
            naive = naive or result.p_value < 0.05
        assert running_p is not None
        sequential_rejections += running_p < 0.05
        naive_rejections += naive
    assert sequential_rejections / experiments <= 0.08  # measured: 0.000
    assert naive_rejections / experiments > 0.12  # measured: 0.158


# --------------------------------------------------------------------------- SRM


def test_sample_ratio_mismatch() -> None:
    balanced = stats.sample_ratio_mismatch([5000, 5000], [0.5, 0.5])
    assert not balanced.flagged
    assert balanced.p_value == 1.0

    skewed = stats.sample_ratio_mismatch([5000, 5400], [0.5, 0.5])
    reference = sps.chisquare([5000, 5400], f_exp=[5200, 5200])
    assert skewed.flagged
    assert skewed.p_value == pytest.approx(float(reference.pvalue), rel=1e-12)
    assert skewed.statistic == pytest.approx(float(reference.statistic))
    assert skewed.p_value < 0.001

    # Weights on any scale; three arms.
    three = stats.sample_ratio_mismatch([2000, 1000, 1030], [2, 1, 1])
    reference = sps.chisquare([2000, 1000, 1030], f_exp=[2015, 1007.5, 1007.5])
    assert three.p_value == pytest.approx(float(reference.pvalue))
    assert not three.flagged


def test_sample_ratio_mismatch_edge_cases() -> None:
    assert stats.sample_ratio_mismatch([0, 0], [0.5, 0.5]) == stats.SrmResult(0.0, 1.0, False)
    assert not stats.sample_ratio_mismatch([100], [1.0]).flagged
    # A variant with weight 0 that still receives units.
    zero_weight = stats.sample_ratio_mismatch([100, 3], [1.0, 0.0])
    assert zero_weight.flagged
    assert zero_weight.p_value == 0.0
    assert not stats.sample_ratio_mismatch([100, 0], [1.0, 0.0]).flagged
    with pytest.raises(ValueError):
        stats.sample_ratio_mismatch([1, 2], [1.0])
    with pytest.raises(ValueError):
        stats.sample_ratio_mismatch([1, 2], [0.0, 0.0])


# --------------------------------------------------------------------------- summaries


def test_summarize() -> None:
    latencies = np.arange(1.0, 101.0)
    summary = stats.summarize(latencies)
    assert summary == stats.LatencySummary(
        count=100,
        mean=50.5,
        p50=float(np.percentile(latencies, 50)),
        p95=float(np.percentile(latencies, 95)),
    )
    assert summary.p95 == pytest.approx(95.05)
    assert stats.summarize(np.array([])) == stats.LatencySummary(0, None, None, None)


def test_summarize_variant() -> None:
    row = stats.summarize_variant([1, 2, 0], [1, 3, 2], [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    assert row.units == 3
    assert row.runs == 6
    assert row.success_rate == pytest.approx(0.5)
    assert row.latency.count == 6
    empty = stats.summarize_variant([], [], [])
    assert (empty.units, empty.runs, empty.success_rate) == (0, 0, None)
    assert empty.latency.mean is None


# --------------------------------------------------------------------------- decisions


def _error_arms(
    rng: np.random.Generator, units: int, rate_c: float, rate_t: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    runs_c = rng.integers(1, 4, size=units).astype(float)
    runs_t = rng.integers(1, 4, size=units).astype(float)
    errors_c = rng.binomial(runs_c.astype(int), rate_c).astype(float)
    errors_t = rng.binomial(runs_t.astype(int), rate_t).astype(float)
    return errors_c, runs_c, errors_t, runs_t


def test_power_error_rate_regression_is_caught() -> None:
    rng = np.random.default_rng(2024)
    errors_c, runs_c, errors_t, runs_t = _error_arms(rng, 2000, 0.05, 0.12)
    result = stats.compare_ratios(errors_c, runs_c, errors_t, runs_t)
    assert result.significant
    assert result.sequential_p_value < 1e-6
    assert result.sequential_ci[0] > 0  # treatment error rate is higher
    assert stats.verdict(result, 2000, 2000, higher_is_better=False) == "worse"
    assert stats.guardrail_breached(result, 2000, 2000)
    # The same data read as a success rate (higher is better).
    success = stats.compare_ratios(runs_c - errors_c, runs_c, runs_t - errors_t, runs_t)
    assert stats.verdict(success, 2000, 2000) == "worse"
    assert stats.guardrail_breached(success, 2000, 2000, higher_is_worse=False)
    # And reversed roles: control is the worse arm, so the treatment is better.
    reversed_roles = stats.compare_ratios(errors_t, runs_t, errors_c, runs_c)
    assert stats.verdict(reversed_roles, 2000, 2000, higher_is_better=False) == "better"
    assert not stats.guardrail_breached(reversed_roles, 2000, 2000)


def test_small_samples_are_collecting() -> None:
    rng = np.random.default_rng(2025)
    errors_c, runs_c, errors_t, runs_t = _error_arms(rng, 60, 0.05, 0.12)
    result = stats.compare_ratios(errors_c, runs_c, errors_t, runs_t)
    assert stats.verdict(result, 60, 60, higher_is_better=False) == "collecting"
    assert not stats.guardrail_breached(result, 60, 60)
    assert stats.verdict(result, 60, 60, min_units=50, higher_is_better=False) in {
        "worse",
        "inconclusive",
    }


def test_no_difference_is_inconclusive_and_running_p_is_used() -> None:
    rng = np.random.default_rng(8)
    errors_c, runs_c, errors_t, runs_t = _error_arms(rng, 500, 0.1, 0.1)
    result = stats.compare_ratios(errors_c, runs_c, errors_t, runs_t)
    assert result.sequential_p_value > 0.05
    assert stats.verdict(result, 500, 500) == "inconclusive"
    # A rejection at an earlier look stands (the running minimum is the valid p-value).
    assert result.difference is not None and result.difference != 0
    decided = stats.verdict(result, 500, 500, previous_p_value=0.001)
    assert decided in {"better", "worse"}


def test_latency_guardrails() -> None:
    rng = np.random.default_rng(17)
    control = rng.lognormal(7.0, 0.5, size=2000)
    slower = rng.lognormal(7.0, 0.5, size=2000) * 1.3
    p95 = stats.compare_percentiles(control, slower)
    assert stats.guardrail_breached(p95, 2000, 2000)
    assert p95.relative_lift == pytest.approx(0.3, abs=0.1)
    mean = stats.compare_means(control, slower)
    assert stats.guardrail_breached(mean, 2000, 2000)
    same = stats.compare_percentiles(control, rng.lognormal(7.0, 0.5, size=2000))
    assert not stats.guardrail_breached(same, 2000, 2000)
    faster = stats.compare_means(control, control * 0.7)
    assert not stats.guardrail_breached(faster, 2000, 2000)
    assert stats.verdict(faster, 2000, 2000, higher_is_better=False) == "better"


# --------------------------------------------------------------------------- edge cases


def _assert_uninformative(result: stats.Comparison) -> None:
    assert result.p_value == 1.0
    assert result.sequential_p_value == 1.0
    assert result.difference_ci == (-math.inf, math.inf)
    assert result.sequential_ci == (-math.inf, math.inf)
    assert result.relative_lift_ci is None
    assert result.standard_error == math.inf
    assert result.tau is None
    assert not result.significant


def test_empty_and_tiny_arms() -> None:
    empty = stats.compare_means(np.array([]), np.array([1.0, 2.0, 3.0]))
    _assert_uninformative(empty)
    assert empty.control_mean is None
    assert empty.treatment_mean == 2.0
    assert empty.difference is None
    assert empty.relative_lift is None
    assert stats.verdict(empty, 0, 3, min_units=0) == "inconclusive"

    single = stats.compare_means([5.0], [6.0, 7.0])
    _assert_uninformative(single)
    assert single.difference == 1.5
    assert single.relative_lift == pytest.approx(0.3)

    _assert_uninformative(stats.compare_ratios([], [], [1.0], [2.0]))
    no_runs = stats.compare_ratios([0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [2.0, 2.0])
    _assert_uninformative(no_runs)
    assert no_runs.control_mean is None
    assert no_runs.treatment_mean == 0.5

    few = stats.compare_percentiles([], [100.0, 200.0])
    _assert_uninformative(few)
    assert few.control_mean is None


def test_zero_variance() -> None:
    same = stats.compare_means([3.0, 3.0, 3.0], [3.0, 3.0])
    assert same.p_value == 1.0
    assert same.sequential_p_value == 1.0
    assert same.difference_ci == (0.0, 0.0)
    assert same.standard_error == 0.0
    assert not same.significant

    apart = stats.compare_means([3.0, 3.0, 3.0], [4.0, 4.0])
    assert apart.p_value == 0.0
    assert apart.sequential_p_value == 0.0
    assert apart.difference_ci == (1.0, 1.0)
    assert apart.relative_lift_ci == pytest.approx((1 / 3, 1 / 3))
    assert apart.significant

    # Every user succeeded in both arms.
    all_ok = stats.compare_ratios([2.0, 3.0], [2.0, 3.0], [1.0, 4.0], [1.0, 4.0])
    assert all_ok.difference == 0.0
    assert all_ok.p_value == 1.0
    assert not all_ok.significant

    # One arm constant, the other not: an ordinary Welch test (written out, because scipy
    # warns of precision loss on a constant sample). V = 1/3, t = sqrt(3), df = 2.
    one_sided = stats.compare_means([3.0, 3.0, 3.0], [3.0, 5.0, 4.0])
    assert one_sided.p_value == pytest.approx(2 * sps.t.sf(math.sqrt(3), 2), rel=1e-12)
    half = sps.t.ppf(0.975, 2) * math.sqrt(1 / 3)
    assert one_sided.difference_ci == pytest.approx((1 - half, 1 + half), rel=1e-12)
    with pytest.warns(RuntimeWarning, match="Precision loss"):
        reference = sps.ttest_ind([3.0, 5.0, 4.0], [3.0, 3.0, 3.0], equal_var=False)
    assert one_sided.p_value == pytest.approx(float(reference.pvalue), rel=1e-12)
    ci = reference.confidence_interval(confidence_level=0.95)
    assert one_sided.difference_ci == pytest.approx((float(ci.low), float(ci.high)), rel=1e-12)


def test_zero_control_mean_has_no_relative_lift() -> None:
    no_errors = stats.compare_ratios([0.0, 0.0, 0.0], [1.0, 2.0, 1.0], [1.0, 0.0], [1.0, 2.0])
    assert no_errors.control_mean == 0.0
    assert no_errors.relative_lift is None
    assert no_errors.relative_lift_ci is None
    assert no_errors.difference == pytest.approx(1 / 3)
    centered = stats.compare_means([-1.0, 1.0], [0.5, 1.5])
    assert centered.relative_lift is None
    assert centered.relative_lift_ci is None


def test_nothing_is_nan() -> None:
    cases = [
        stats.compare_means([], []),
        stats.compare_means([1.0], [1.0]),
        stats.compare_means([1.0, 1.0], [1.0, 1.0]),
        stats.compare_ratios([0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]),
        stats.compare_percentiles([5.0, 5.0, 5.0], [5.0, 5.0]),
    ]
    for result in cases:
        for value in vars(result).values():
            flat = value if isinstance(value, tuple) else (value,)
            for item in flat:
                assert not (isinstance(item, float) and math.isnan(item)), result


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        stats.compare_means([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        stats.compare_means(np.ones((2, 2)), [1.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        stats.compare_ratios([1.0], [1.0, 2.0], [1.0], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        stats.compare_ratios([1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        stats.compare_means([1.0, 2.0], [1.0, 2.0], alpha=1.5)
    with pytest.raises(ValueError, match="tau"):
        stats.compare_means([1.0, 2.0], [1.0, 2.0], tau=-1.0)
    with pytest.raises(ValueError, match="percentile"):
        stats.compare_percentiles([1.0, 2.0], [1.0, 2.0], percentile=100.0)


def test_explicit_tau_is_used() -> None:
    result = stats.compare_means([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0], tau=2.0)
    assert result.tau == 2.0
    assert result.sequential_p_value == stats.sequential_p_value(2.5, 25 / 12, 2.0)
    default = stats.compare_means([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    assert default.tau == pytest.approx(stats.default_tau(25 / 12, 4, 4))
