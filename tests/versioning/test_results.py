"""Experiment results from the runs, and guardrails that stop a bad treatment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import time_machine

from monitoring import ingest
from tests.conftest import graph_run, key_client
from tests.versioning.test_versions_api import V1, v2
from versioning import experiments, results, services
from versioning.models import Assignment, Experiment, GraphVersion, Variant, VersionEvent

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def running() -> Experiment:
    control = services.register("support-bot", V1).version
    treatment = services.register("support-bot", v2()).version
    experiment = Experiment.objects.create(graph=control.graph, key="reply-v2", min_units=100)
    Variant.objects.create(experiment=experiment, position=0, name="control", version=control)
    Variant.objects.create(experiment=experiment, position=1, name="treatment", version=treatment)
    experiments.start(experiment, now=NOW - timedelta(hours=1))
    return experiment


def traffic(
    experiment: Experiment, variant: str, users: int, error_rate: float, latency_ms: float
) -> None:
    """``users`` users with 2 runs each in ``variant``; errors drawn at ``error_rate``."""
    rng = np.random.default_rng(len(variant) + users)
    chosen = Variant.objects.get(experiment=experiment, name=variant)
    runs = []
    for index in range(users):
        user = f"{variant}-{index}"
        Assignment.objects.create(experiment=experiment, unit=user, variant=chosen)
        for _ in range(2):
            runs.append(
                graph_run(
                    started_at=NOW - timedelta(minutes=30),
                    status="error" if rng.random() < error_rate else "success",
                    duration_ms=float(rng.lognormal(np.log(latency_ms), 0.3)),
                    user_id=user,
                    version=str(chosen.version.number),
                    experiment=f"{experiment.key}:{variant}",
                )
            )
    for start in range(0, len(runs), 1000):
        assert not ingest.ingest({"graph_runs": runs[start : start + 1000]}, NOW).counts["rejected"]


def test_results_per_variant_and_a_worse_treatment(running: Experiment) -> None:
    traffic(running, "control", 400, error_rate=0.05, latency_ms=800)
    traffic(running, "treatment", 400, error_rate=0.30, latency_ms=1600)

    document = results.compute(running, now=NOW)

    control, treatment = document["variants"]
    assert (control["name"], control["units"], control["runs"]) == ("control", 400, 800)
    assert treatment["assigned_units"] == 400
    assert control["error_rate"] == pytest.approx(0.05, abs=0.025)
    assert treatment["error_rate"] == pytest.approx(0.30, abs=0.04)
    assert treatment["latency_ms"]["p50"] == pytest.approx(1600, rel=0.1)
    [comparison] = document["comparisons"]
    assert comparison["error_rate"]["verdict"] == "worse"
    assert comparison["success_rate"]["verdict"] == "worse"
    assert comparison["latency_p95_ms"]["verdict"] == "worse"
    assert comparison["error_rate"]["guardrail_breached"]
    assert comparison["error_rate"]["difference_ci"][0] > 0.15
    assert not document["sample_ratio_mismatch"]["flagged"]
    json.dumps(document, allow_nan=False)  # no infinities or NaN


def test_too_few_units_collect_before_any_verdict(running: Experiment) -> None:
    traffic(running, "control", 30, error_rate=0.0, latency_ms=800)
    traffic(running, "treatment", 30, error_rate=0.9, latency_ms=800)

    [comparison] = results.compute(running, now=NOW)["comparisons"]

    assert comparison["error_rate"]["verdict"] == "collecting"
    assert not comparison["error_rate"]["guardrail_breached"]
    assert results.check_guardrails(running, now=NOW) is None
    assert Experiment.objects.get().status == "running"


def test_a_sample_ratio_mismatch_is_flagged(running: Experiment) -> None:
    traffic(running, "control", 500, error_rate=0.05, latency_ms=800)
    traffic(running, "treatment", 380, error_rate=0.05, latency_ms=800)

    document = results.compute(running, now=NOW)

    assert document["sample_ratio_mismatch"]["flagged"]
    assert document["sample_ratio_mismatch"]["p_value"] < 0.001


def test_the_guardrail_stops_the_experiment_and_rolls_back_with_the_figures(
    running: Experiment,
) -> None:
    services.activate(GraphVersion.objects.get(number=2), actor="alice")  # treatment shipped
    traffic(running, "control", 400, error_rate=0.05, latency_ms=800)
    traffic(running, "treatment", 400, error_rate=0.30, latency_ms=800)

    reason = results.check_guardrails(running, now=NOW)

    running.refresh_from_db()
    assert running.status == "stopped" and running.ended_at == NOW
    assert reason is not None and running.stopped_reason == reason
    assert "treatment is significantly worse than control: error_rate" in reason
    assert "sequential p" in reason
    event = VersionEvent.objects.select_related("from_version", "to_version").get(
        action="auto_rollback"
    )
    assert event.from_version is not None
    assert (event.from_version.number, event.to_version.number) == (2, 1)
    assert (event.actor, event.reason) == ("lgmon guardrail", reason)
    assert GraphVersion.objects.get(is_active=True).number == 1
    assert running.sequential["treatment:error_rate"] < 0.05


def test_results_api(running: Experiment) -> None:
    traffic(running, "control", 120, error_rate=0.05, latency_ms=800)
    traffic(running, "treatment", 120, error_rate=0.05, latency_ms=800)
    reader = key_client("read")

    response = reader.get("/api/v1/experiments/reply-v2/results/")

    assert response.status_code == 200
    body = response.json()
    assert [v["units"] for v in body["variants"]] == [120, 120]
    assert body["comparisons"][0]["error_rate"]["verdict"] in ("inconclusive", "better", "worse")
    assert reader.get("/api/v1/experiments/nope/results/").status_code == 404
