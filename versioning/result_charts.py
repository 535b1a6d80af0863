"""Charts of an experiment's results page: per variant, the success and error rates with 95%
Wilson intervals, and per treatment the relative lift of each metric over the control with its
95% interval. In the chart format ``analytics/static/lgmon/dashboards.js`` draws (kind
``intervals``: a floating bar from the low to the high end, a point for the estimate).
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from scipy import stats as scipy_stats

_LABELS = {
    "success_rate": "success rate",
    "error_rate": "error rate",
    "latency_mean_ms": "latency mean",
    "latency_p95_ms": "latency p95",
}


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def wilson_interval(successes: int, trials: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion, or None without trials."""
    if trials <= 0:
        return None
    successes = min(max(successes, 0), trials)
    ci = scipy_stats.binomtest(successes, trials).proportion_ci(
        confidence_level=0.95, method="wilson"
    )
    return float(ci.low), float(ci.high)


def _rate_chart(
    canvas: str, title: str, variants: list[dict[str, Any]], key: str
) -> dict[str, Any]:
    estimates: list[float | None] = []
    intervals: list[list[float] | None] = []
    for row in variants:
        rate, runs = row.get(key), int(row.get("runs") or 0)
        bounds = wilson_interval(round(rate * runs), runs) if _finite(rate) else None
        if _finite(rate) and bounds is not None:
            estimates.append(round(100 * rate, 3))
            intervals.append([round(100 * bounds[0], 3), round(100 * bounds[1], 3)])
        else:
            estimates.append(None)
            intervals.append(None)
    return {
        "canvas": canvas,
        "title": title,
        "kind": "intervals",
        "unit": "%",
        "labels": [str(row["name"]) for row in variants],
        "estimates": estimates,
        "intervals": intervals,
        "points": len(variants),
    }


def charts(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's charts from ``versioning.results.compute``'s document."""
    variants = list(document.get("variants") or [])
    if not variants:
        return []
    found = [
        _rate_chart(
            "results-success-rate",
            "Success rate per variant (95% Wilson interval)",
            variants,
            "success_rate",
        ),
        _rate_chart(
            "results-error-rate",
            "Error rate per variant (95% Wilson interval)",
            variants,
            "error_rate",
        ),
    ]
    labels: list[str] = []
    estimates: list[float | None] = []
    intervals: list[list[float] | None] = []
    for comparison in document.get("comparisons") or []:
        for name, label in _LABELS.items():
            figures = comparison.get(name) or {}
            lift, bounds = figures.get("relative_lift"), figures.get("relative_lift_ci")
            labels.append(f"{comparison['variant']}: {label}")
            estimates.append(round(100 * lift, 3) if _finite(lift) else None)
            if isinstance(bounds, list | tuple) and len(bounds) == 2:
                low, high = bounds
            else:
                low = high = None
            if _finite(low) and _finite(high):
                intervals.append([round(100 * low, 3), round(100 * high, 3)])
            else:
                intervals.append(None)
    if labels:
        found.append(
            {
                "canvas": "results-lift",
                "title": "Relative lift over the control (95% interval)",
                "kind": "intervals",
                "unit": "%",
                "zero": False,
                "labels": labels,
                "estimates": estimates,
                "intervals": intervals,
                "points": len(labels),
            }
        )
    return found
