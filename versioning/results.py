"""An experiment's results, computed from the runs themselves (DESIGN section 8), and its
guardrails.

Runs belong to a variant by their ``experiment`` field, ``<key>:<variant>`` (the SDK reports
it after ``Client.resolve``; ``record`` in the API writes the same). A unit is the run's user,
else its session; runs with neither count as runs but not as units.

Per variant: units, runs, success rate and error rate (per-unit ratio metrics), latency mean,
p50 and p95. Each treatment is compared with the control (position 0) on success rate, error
rate, mean latency (Welch) and p95 latency, with 95% intervals, fixed-horizon p-values and
always-valid sequential p-values; a verdict is given only once both sides have
``experiment.min_units`` units. The sequential p-values are running minima over every look the
guardrail task has taken, stored on the experiment, which is what keeps them valid when people
look early and often. The sample-ratio check compares the units assigned to each variant with
its weight.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Count, Q

from monitoring.models import GraphRun, RunStatus

from . import stats
from .models import Assignment, Experiment, Graph, GraphVersion, Variant, VersionEvent

# metric: (higher is better, a guardrail)
METRICS: dict[str, tuple[bool, bool]] = {
    "success_rate": (True, False),
    "error_rate": (False, True),
    "latency_mean_ms": (False, False),
    "latency_p95_ms": (False, True),
}
GUARDRAIL_ACTOR = "lgmon guardrail"


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


class _Arm:
    def __init__(self) -> None:
        self.units: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # runs, ok, errors
        self.anonymous_runs = 0
        self.latencies: list[float] = []
        self.latency_units: list[str] = []


def _arms(experiment: Experiment, variants: list[Variant], now: datetime) -> dict[str, _Arm]:
    arms = {variant.name: _Arm() for variant in variants}
    runs = GraphRun.objects.filter(
        graph=experiment.graph,
        experiment__startswith=f"{experiment.key}:",
        started_at__gte=experiment.started_at or experiment.created_at,
        started_at__lt=experiment.ended_at or now,
    )
    per_unit = runs.values("experiment", "user_id", "session_id").annotate(
        runs=Count("id"),
        ok=Count("id", filter=Q(status=RunStatus.SUCCESS)),
        errors=Count("id", filter=Q(status=RunStatus.ERROR)),
    )
    for row in per_unit.order_by():
        arm = arms.get(row["experiment"].split(":", 1)[1])
        if arm is None:
            continue
        unit = row["user_id"] or row["session_id"]
        if not unit:
            arm.anonymous_runs += row["runs"]
            continue
        totals = arm.units[unit]
        totals[0] += row["runs"]
        totals[1] += row["ok"]
        totals[2] += row["errors"]
    for label, user, session, duration in runs.values_list(
        "experiment", "user_id", "session_id", "duration_ms"
    ).iterator(chunk_size=10_000):
        arm = arms.get(label.split(":", 1)[1])
        if arm is not None:
            arm.latencies.append(duration)
            arm.latency_units.append(user or session or "")
    return arms


def _unit_arrays(arm: _Arm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    totals = np.array(list(arm.units.values()), dtype=float).reshape(-1, 3)
    return totals[:, 0], totals[:, 1], totals[:, 2]


def compute(experiment: Experiment, *, now: datetime) -> dict[str, Any]:
    """The results document (JSON-ready); ``sequential`` holds the new running p-values."""
    variants = list(experiment.variants.select_related("version").order_by("position"))
    if not variants:
        variants_missing: dict[str, Any] = {
            "experiment": experiment.key,
            "graph": experiment.graph.name,
            "status": experiment.status,
            "variants": [],
            "comparisons": [],
            "sample_ratio_mismatch": None,
            "sequential": {},
        }
        return variants_missing
    arms = _arms(experiment, variants, now)
    assigned = dict(
        Assignment.objects.filter(experiment=experiment)
        .values("variant__name")
        .annotate(n=Count("id"))
        .values_list("variant__name", "n")
    )
    running: dict[str, float] = dict(experiment.sequential or {})
    rows = []
    for variant in variants:
        arm = arms[variant.name]
        runs, ok, errors = _unit_arrays(arm)
        summary = stats.summarize_variant(ok, runs, np.array(arm.latencies, dtype=float))
        total = float(runs.sum())
        rows.append(
            {
                "name": variant.name,
                "version": variant.version.number,
                "weight": variant.weight,
                "assigned_units": assigned.get(variant.name, 0),
                "units": summary.units,
                "runs": summary.runs,  # of its units: what the rates divide
                "anonymous_runs": arm.anonymous_runs,  # no user or session: latency only
                "success_rate": summary.success_rate,
                "error_rate": float(errors.sum()) / total if total else None,
                "latency_ms": asdict(summary.latency),
            }
        )
    control = arms[variants[0].name]
    c_runs, c_ok, c_errors = _unit_arrays(control)
    comparisons = []
    for variant in variants[1:]:
        arm = arms[variant.name]
        t_runs, t_ok, t_errors = _unit_arrays(arm)
        c_lat, t_lat = np.array(control.latencies), np.array(arm.latencies)
        found = {
            "success_rate": stats.compare_ratios(c_ok, c_runs, t_ok, t_runs),
            "error_rate": stats.compare_ratios(c_errors, c_runs, t_errors, t_runs),
            "latency_mean_ms": stats.compare_means(c_lat, t_lat),
            "latency_p95_ms": stats.compare_percentiles(
                c_lat,
                t_lat,
                control_units=np.array(control.latency_units),
                treatment_units=np.array(arm.latency_units),
            ),
        }
        metrics = {}
        for name, comparison in found.items():
            key = f"{variant.name}:{name}"
            previous = running.get(key)
            running[key] = stats.running(previous, comparison.sequential_p_value)
            higher_is_better, guardrail = METRICS[name]
            units = (len(control.units), len(arm.units))
            metrics[name] = {
                **asdict(comparison),
                "sequential_p_value": running[key],
                "verdict": stats.verdict(
                    comparison,
                    *units,
                    min_units=experiment.min_units,
                    higher_is_better=higher_is_better,
                    previous_p_value=previous,
                ),
                "guardrail_breached": guardrail
                and stats.guardrail_breached(
                    comparison, *units, min_units=experiment.min_units, previous_p_value=previous
                ),
            }
        comparisons.append({"variant": variant.name, "against": variants[0].name, **metrics})
    srm = stats.sample_ratio_mismatch(
        [assigned.get(v.name, 0) for v in variants], [v.weight for v in variants]
    )
    document: dict[str, Any] = _finite(
        {
            "experiment": experiment.key,
            "graph": experiment.graph.name,
            "status": experiment.status,
            "started_at": experiment.started_at.isoformat() if experiment.started_at else None,
            "ended_at": experiment.ended_at.isoformat() if experiment.ended_at else None,
            "min_units": experiment.min_units,
            "variants": rows,
            "comparisons": comparisons,
            "sample_ratio_mismatch": asdict(srm),
            "sequential": running,
        }
    )
    return document


def check_guardrails(experiment: Experiment, *, now: datetime) -> str | None:
    """One look at a running experiment: store its running sequential p-values and, when a
    treatment breaches a guardrail, stop the experiment and move its traffic back to the
    control (an automatic rollback event with the figures). The reason, or None."""
    results = compute(experiment, now=now)
    Experiment.objects.filter(id=experiment.id).update(sequential=results["sequential"])
    if not experiment.guardrails:
        return None
    for comparison in results["comparisons"]:
        breached = [
            name
            for name, (_, guardrail) in METRICS.items()
            if guardrail and comparison[name]["guardrail_breached"]
        ]
        if breached:
            reason = _reason(experiment, comparison, breached)
            _roll_back(experiment, comparison["variant"], reason, now)
            return reason
    return None


def _reason(experiment: Experiment, comparison: dict[str, Any], breached: list[str]) -> str:
    parts = []
    for name in breached:
        figures = comparison[name]
        parts.append(
            f"{name} {figures['treatment_mean']:.4g} vs {figures['control_mean']:.4g} "
            f"(difference {figures['difference']:+.4g}, sequential p "
            f"{figures['sequential_p_value']:.2g}, p {figures['p_value']:.2g})"
        )
    return (
        f"Guardrail of experiment {experiment.key}: {comparison['variant']} is significantly "
        f"worse than {comparison['against']}: " + "; ".join(parts) + "."
    )


def _roll_back(experiment: Experiment, variant_name: str, reason: str, now: datetime) -> None:
    variants = {v.name: v for v in experiment.variants.select_related("version")}
    control = min(variants.values(), key=lambda v: v.position)
    treatment = variants[variant_name]
    with transaction.atomic():
        graph = Graph.objects.select_for_update().get(id=experiment.graph_id)
        stopped = Experiment.objects.filter(
            id=experiment.id, status=Experiment.Status.RUNNING
        ).update(status=Experiment.Status.STOPPED, ended_at=now, stopped_reason=reason)
        if not stopped:
            return  # stopped meanwhile by someone else
        active = GraphVersion.objects.active().filter(graph=graph).first()
        if active is not None and active.id != control.version_id:
            GraphVersion.objects.filter(id=active.id).update(is_active=False)
            GraphVersion.objects.filter(id=control.version_id).update(is_active=True)
        VersionEvent.objects.create(
            graph=graph,
            from_version=treatment.version,
            to_version=control.version,
            action=VersionEvent.Action.AUTO_ROLLBACK,
            reason=reason,
            actor=GUARDRAIL_ACTOR,
            created_at=now,
        )
    experiment.refresh_from_db()
