from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import retention
from monitoring.models import GraphRun, HourRollup, MetricPoint, MinuteRollup, NodeRun
from versioning.models import Graph

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _run(graph: Graph, age: timedelta, nodes: int = 2) -> GraphRun:
    started = NOW - age
    run = GraphRun.objects.create(
        run_id=uuid.uuid4(), graph=graph, status="success", started_at=started, duration_ms=1
    )
    NodeRun.objects.bulk_create(
        NodeRun(graph_run=run, node=f"n{i}", status="success", started_at=started, duration_ms=1)
        for i in range(nodes)
    )
    return run


def _rollup(model: type[MinuteRollup] | type[HourRollup], graph: Graph, age: timedelta) -> None:
    model.objects.create(
        bucket_start=NOW - age,
        graph=graph,
        node="",
        status="success",
        count=1,
        duration_sum_ms=1,
        duration_min_ms=1,
        duration_max_ms=1,
    )


def test_it_prunes_raw_data_past_retention_in_batches_and_keeps_rollups_longer(
    settings: object,
) -> None:
    graph = Graph.objects.create(name="g")
    old_runs = [_run(graph, timedelta(days=15)) for _ in range(5)]
    kept = _run(graph, timedelta(days=13))
    MetricPoint.objects.create(name="cpu", value=1, timestamp=NOW - timedelta(days=20))
    MetricPoint.objects.create(name="cpu", value=2, timestamp=NOW - timedelta(days=1))
    _rollup(MinuteRollup, graph, timedelta(days=20))
    _rollup(MinuteRollup, graph, timedelta(days=40))
    _rollup(HourRollup, graph, timedelta(days=40))
    _rollup(HourRollup, graph, timedelta(days=500))

    deleted = retention.prune(now=NOW, batch_size=2)

    assert deleted == {
        "graph_runs": 5,
        "metric_points": 1,
        "minute_rollups": 1,
        "session_activity": 0,
        "hour_rollups": 1,
    }
    assert list(GraphRun.objects.values_list("id", flat=True)) == [kept.id]
    assert set(NodeRun.objects.values_list("graph_run_id", flat=True)) == {kept.id}
    assert not GraphRun.objects.filter(id__in=[run.id for run in old_runs]).exists()
    assert list(MetricPoint.objects.values_list("value", flat=True)) == [2.0]
    assert MinuteRollup.objects.count() == 1
    assert HourRollup.objects.count() == 1


def test_it_follows_the_configured_retention(settings: object) -> None:
    settings.LGMON_RAW_RETENTION_DAYS = 1  # type: ignore[attr-defined]
    graph = Graph.objects.create(name="g")
    _run(graph, timedelta(days=2))
    assert retention.prune(now=NOW)["graph_runs"] == 1
    assert retention.prune(now=NOW)["graph_runs"] == 0
