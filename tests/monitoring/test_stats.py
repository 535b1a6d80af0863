from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from monitoring.models import HourRollup, MinuteRollup
from tests.conftest import graph_run

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def traffic(post_batch: Any) -> None:
    """support-bot: 10 runs in the last 10 minutes (2 errors), 4 more three hours ago;
    billing: 1 interrupted run. Node durations are 10..100 ms for 'retrieve'."""
    runs = []
    for i in range(10):
        runs.append(
            graph_run(
                started_at=NOW - timedelta(minutes=i, seconds=5),
                status="error" if i in (3, 7) else "success",
                duration_ms=100.0 * (i + 1),
                nodes=[("retrieve", "success", 10.0 * (i + 1)), ("answer", "success", 500.0)],
            )
        )
    for i in range(4):
        runs.append(graph_run(started_at=NOW - timedelta(hours=3, minutes=i), duration_ms=50.0))
    runs.append(graph_run("billing", status="interrupted", started_at=NOW - timedelta(minutes=1)))
    assert post_batch(runs).status_code == 200


def test_it_computes_window_statistics_for_one_graph(
    reader_client: APIClient, traffic: None
) -> None:
    response = reader_client.get("/api/v1/stats/", {"graph": "support-bot", "window": "10m"})

    assert response.status_code == 200
    body = response.json()
    assert (body["runs"], body["errors"], body["error_rate"]) == (10, 2, 0.2)
    assert body["by_status"] == {"success": 8, "error": 2, "interrupted": 0, "cancelled": 0}
    latency = body["latency_ms"]
    assert (latency["avg"], latency["min"], latency["max"]) == (550.0, 100.0, 1000.0)
    assert latency["p50"] == pytest.approx(500.0, rel=0.02)
    assert latency["p95"] == pytest.approx(900.0, rel=0.02)
    assert latency["p99"] == pytest.approx(900.0, rel=0.02)


def test_it_combines_hour_and_minute_rollups_for_long_windows(
    reader_client: APIClient, traffic: None
) -> None:
    response = reader_client.get("/api/v1/stats/", {"graph": "support-bot", "window": "24h"})
    assert response.json()["runs"] == 14
    assert MinuteRollup.objects.filter(node="").count() > HourRollup.objects.filter(node="").count()


def test_it_reads_one_node_and_every_graph(reader_client: APIClient, traffic: None) -> None:
    node = reader_client.get("/api/v1/stats/", {"node": "retrieve", "window": "1h"}).json()
    assert node["runs"] == 10
    assert node["latency_ms"]["avg"] == 55.0
    everything = reader_client.get("/api/v1/stats/", {"window": "1h"}).json()
    assert everything["runs"] == 11
    assert everything["by_status"]["interrupted"] == 1


def test_it_lists_statistics_per_graph_and_per_node(
    reader_client: APIClient, traffic: None
) -> None:
    graphs = reader_client.get("/api/v1/stats/graphs/", {"window": "24h"}).json()["results"]
    assert [(row["graph"], row["runs"]) for row in graphs] == [("billing", 1), ("support-bot", 14)]

    nodes = reader_client.get("/api/v1/stats/nodes/", {"window": "1h"}).json()["results"]
    assert [(row["graph"], row["node"], row["runs"]) for row in nodes] == [
        ("support-bot", "answer", 10),
        ("support-bot", "retrieve", 10),
    ]


def test_it_returns_a_gapless_time_series(reader_client: APIClient, traffic: None) -> None:
    response = reader_client.get(
        "/api/v1/stats/series/", {"graph": "support-bot", "window": "10m", "step": "5m"}
    )
    points = response.json()["points"]
    assert [point["start"] for point in points] == [
        "2026-11-24T11:50:00Z",
        "2026-11-24T11:55:00Z",
        "2026-11-24T12:00:00Z",
    ]
    assert [point["runs"] for point in points] == [4, 5, 1]
    assert [point["errors"] for point in points] == [1, 1, 0]

    hourly = reader_client.get(
        "/api/v1/stats/series/", {"graph": "support-bot", "window": "6h", "step": "1h"}
    ).json()["points"]
    assert len(hourly) == 7
    assert [point["runs"] for point in hourly] == [0, 0, 3, 1, 0, 9, 1]


def test_it_serves_the_seed_error_rate_and_average_duration(
    reader_client: APIClient, traffic: None
) -> None:
    rate = reader_client.get("/api/v1/error-rate/", {"graph": "support-bot", "minutes": "10"})
    assert rate.json() == {
        "graph": "support-bot",
        "minutes": 10,
        "runs": 10,
        "errors": 2,
        "error_rate_percent": 20.0,
    }
    average = reader_client.get("/api/v1/average-duration/", {"node": "answer", "minutes": "15"})
    assert average.json()["average_duration_ms"] == 500.0
    assert reader_client.get("/api/v1/average-duration/").status_code == 400


def test_it_answers_empty_windows_with_zero_runs(reader_client: APIClient) -> None:
    body = reader_client.get("/api/v1/stats/", {"graph": "nothing"}).json()
    assert body["runs"] == 0
    assert body["error_rate"] is None
    assert body["latency_ms"]["p95"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "forever"}, "window"),
        ({"window": "0m"}, "window"),
        ({"window": "1h", "start": "2026-11-24T10:00:00Z"}, "window"),
        ({"start": "2026-11-24T12:00:00Z", "end": "2026-11-24T11:00:00Z"}, "start"),
        ({"start": "not a date"}, "start"),
        ({"window": "30d", "step": "1m"}, "step"),
        ({"step": "2m"}, "step"),
    ],
)
def test_it_rejects_bad_query_parameters(reader_client: APIClient, params: Any, field: str) -> None:
    response = reader_client.get("/api/v1/stats/series/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_it_requires_the_read_scope(app_client: APIClient) -> None:
    assert app_client.get("/api/v1/stats/").status_code == 403
    assert APIClient().get("/api/v1/stats/").status_code == 401


def test_it_lists_raw_runs_with_filters(reader_client: APIClient, traffic: None) -> None:
    response = reader_client.get("/api/v1/runs/", {"graph": "support-bot", "status": "error"})
    results = response.json()["results"]
    assert [run["status"] for run in results] == ["error", "error"]
    assert {node["node"] for node in results[0]["node_runs"]} == {"retrieve", "answer"}
    one = reader_client.get(f"/api/v1/runs/{results[0]['run_id']}/").json()
    assert one["run_id"] == results[0]["run_id"]
    assert reader_client.get("/api/v1/runs/", {"status": "bogus"}).status_code == 400
