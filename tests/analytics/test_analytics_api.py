from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from tests.conftest import graph_run

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def usage(post_batch: Any) -> None:
    """u-1 runs support-bot 3 times (2 sessions) and billing once, 8 days ago;
    u-2 runs support-bot twice today; one anonymous run."""
    day = timedelta(days=1)
    nodes = [("retrieve", "success", 5.0), ("answer", "error", 9.0)]
    runs = [
        graph_run(user_id="u-1", session_id="a", started_at=NOW - 2 * day, nodes=nodes),
        graph_run(user_id="u-1", session_id="a", started_at=NOW - 3 * day, nodes=nodes),
        graph_run(user_id="u-1", session_id="b", started_at=NOW - 4 * day, status="error"),
        graph_run("billing", user_id="u-1", session_id="c", started_at=NOW - 8 * day),
        graph_run(user_id="u-2", session_id="d", started_at=NOW - timedelta(hours=2)),
        graph_run(user_id="u-2", session_id="d", started_at=NOW - timedelta(hours=1)),
        graph_run("billing", started_at=NOW - timedelta(hours=1)),
    ]
    assert post_batch(runs).status_code == 200


def test_it_ranks_popular_graphs_over_n_days(reader_client: APIClient, usage: None) -> None:
    week = reader_client.get("/api/v1/analytics/popular-graphs/", {"days": "7"}).json()
    assert week["results"] == [
        {"graph": "support-bot", "runs": 5, "errors": 1},
        {"graph": "billing", "runs": 1, "errors": 0},
    ]
    top = reader_client.get("/api/v1/analytics/popular-graphs/", {"days": "30", "limit": "1"})
    assert top.json()["results"] == [{"graph": "support-bot", "runs": 5, "errors": 1}]


def test_it_reports_one_users_analytics(reader_client: APIClient, usage: None) -> None:
    body = reader_client.get("/api/v1/analytics/users/u-1/", {"days": "30"}).json()
    assert body["total_runs"] == 4
    assert body["errors"] == 1
    assert body["sessions"] == 3
    assert body["runs_per_graph"] == {"support-bot": 3, "billing": 1}
    assert body["first_run"] == "2026-11-16T12:00:00Z"
    assert body["last_run"] == "2026-11-22T12:00:00Z"
    nobody = reader_client.get("/api/v1/analytics/users/nobody/").json()
    assert (nobody["total_runs"], nobody["first_run"]) == (0, None)


def test_it_counts_node_usage_per_graph(reader_client: APIClient, usage: None) -> None:
    body = reader_client.get("/api/v1/analytics/nodes/", {"graph": "support-bot"}).json()
    assert body["results"] == [
        {"graph": "support-bot", "node": "answer", "runs": 2, "errors": 2},
        {"graph": "support-bot", "node": "retrieve", "runs": 2, "errors": 0},
    ]


def test_it_counts_distinct_users_and_sessions(reader_client: APIClient, usage: None) -> None:
    today = reader_client.get("/api/v1/analytics/active-users/", {"window": "1d"}).json()
    assert (today["runs"], today["users"], today["sessions"]) == (3, 1, 1)
    month = reader_client.get("/api/v1/analytics/active-users/", {"days": "30"}).json()
    assert (month["runs"], month["users"], month["sessions"]) == (7, 2, 4)
    bot = reader_client.get(
        "/api/v1/analytics/active-users/", {"days": "30", "graph": "billing"}
    ).json()
    assert (bot["runs"], bot["users"]) == (2, 1)


@pytest.mark.parametrize(
    "params", [{"days": "0"}, {"days": "x"}, {"days": "3", "window": "1h"}, {"limit": "0"}]
)
def test_it_rejects_bad_parameters(reader_client: APIClient, params: Any) -> None:
    assert reader_client.get("/api/v1/analytics/popular-graphs/", params).status_code == 400
