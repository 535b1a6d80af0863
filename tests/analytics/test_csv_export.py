"""The analytics tables as CSV (``?format=csv``), and the usage page's Download CSV links."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from monitoring.renderers import CSVRenderer
from tests.conftest import graph_run

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POPULAR = "/api/v1/analytics/popular-graphs/"
NODES = "/api/v1/analytics/nodes/"
ACTIVE = "/api/v1/analytics/active-users/"


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def usage(post_batch: Any) -> None:
    """u-1 runs support-bot twice (one failed node) and billing once; u-2 support-bot once."""
    nodes = [("retrieve", "success", 5.0), ("answer", "error", 9.0)]
    hour = timedelta(hours=1)
    runs = [
        graph_run(user_id="u-1", session_id="a", started_at=NOW - 5 * hour, nodes=nodes),
        graph_run(user_id="u-1", session_id="a", started_at=NOW - 4 * hour, status="error"),
        graph_run("billing", user_id="u-1", session_id="b", started_at=NOW - 3 * hour),
        graph_run(user_id="u-2", session_id="c", started_at=NOW - 2 * hour),
    ]
    assert post_batch(runs).status_code == 200


def parse(response: Any) -> tuple[list[str], list[dict[str, str]]]:
    text = response.content.decode()
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


def test_popular_graphs_as_csv(reader_client: APIClient, usage: None) -> None:
    response = reader_client.get(POPULAR, {"days": "7", "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="lgmon-popular-graphs-2026-11-24.csv"'
    )
    header, rows = parse(response)
    assert header == ["graph", "runs", "errors"]
    assert rows == [
        {"graph": "support-bot", "runs": "3", "errors": "1"},
        {"graph": "billing", "runs": "1", "errors": "0"},
    ]
    json_rows = reader_client.get(POPULAR, {"days": "7"}).json()["results"]
    assert [{key: str(value) for key, value in row.items()} for row in json_rows] == rows


def test_json_stays_the_default(reader_client: APIClient, usage: None) -> None:
    for path in (POPULAR, NODES, ACTIVE, "/api/v1/analytics/users/u-1/"):
        response = reader_client.get(path)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert "Content-Disposition" not in response
        response.json()


def test_accept_text_csv_also_gives_csv(reader_client: APIClient, usage: None) -> None:
    response = reader_client.get(NODES, HTTP_ACCEPT="text/csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header, rows = parse(response)
    assert header == ["graph", "node", "runs", "errors"]
    assert rows == [
        {"graph": "support-bot", "node": "answer", "runs": "1", "errors": "1"},
        {"graph": "support-bot", "node": "retrieve", "runs": "1", "errors": "0"},
    ]


def test_node_usage_csv_takes_the_filters(reader_client: APIClient, usage: None) -> None:
    response = reader_client.get(NODES, {"format": "csv", "graph": "billing", "window": "1d"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="lgmon-node-usage-2026-11-24.csv"'
    )
    assert response.content.decode() == "graph,node,runs,errors\r\n"  # no rows, still a header
    limited = parse(reader_client.get(NODES, {"format": "csv", "limit": "1"}))[1]
    assert [row["node"] for row in limited] == ["answer"]


def test_an_empty_table_keeps_its_header(reader_client: APIClient) -> None:
    response = reader_client.get(POPULAR, {"format": "csv"})

    assert response.status_code == 200
    assert response.content.decode() == "graph,runs,errors\r\n"


def test_active_users_are_one_row(reader_client: APIClient, usage: None) -> None:
    response = reader_client.get(ACTIVE, {"format": "csv", "window": "1d"})

    assert response["Content-Disposition"] == (
        'attachment; filename="lgmon-active-users-2026-11-24.csv"'
    )
    header, rows = parse(response)
    assert header == ["start", "end", "graph", "runs", "users", "sessions"]
    assert rows == [
        {
            "start": "2026-11-23T12:00:00Z",
            "end": "2026-11-24T12:00:00Z",
            "graph": "",
            "runs": "4",
            "users": "2",
            "sessions": "3",
        }
    ]


def test_a_users_analytics_are_one_row_with_a_column_per_graph(
    reader_client: APIClient, usage: None
) -> None:
    response = reader_client.get("/api/v1/analytics/users/u-1/", {"format": "csv", "days": "2"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="lgmon-user-analytics-2026-11-24.csv"'
    )
    header, rows = parse(response)
    assert header == [
        "start",
        "end",
        "user_id",
        "total_runs",
        "errors",
        "sessions",
        "runs_per_graph.support-bot",
        "runs_per_graph.billing",
        "first_run",
        "last_run",
    ]
    assert rows == [
        {
            "start": "2026-11-22T12:00:00Z",
            "end": "2026-11-24T12:00:00Z",
            "user_id": "u-1",
            "total_runs": "3",
            "errors": "1",
            "sessions": "2",
            "runs_per_graph.support-bot": "2",
            "runs_per_graph.billing": "1",
            "first_run": "2026-11-24T07:00:00Z",
            "last_run": "2026-11-24T09:00:00Z",
        }
    ]
    nobody = parse(reader_client.get("/api/v1/analytics/users/nobody/", {"format": "csv"}))[1]
    assert (nobody[0]["total_runs"], nobody[0]["first_run"]) == ("0", "")


def test_csv_cells_are_guarded_against_formulas(reader_client: APIClient, post_batch: Any) -> None:
    runs = [
        graph_run('=HYPERLINK("http://evil")', user_id="@me", nodes=[("+node", "success", 1.0)])
    ]
    assert post_batch(runs).status_code == 200

    popular = parse(reader_client.get(POPULAR, {"format": "csv"}))[1]
    assert popular[0]["graph"] == '\'=HYPERLINK("http://evil")'
    nodes = parse(reader_client.get(NODES, {"format": "csv"}))[1]
    assert nodes[0]["node"] == "'+node"
    header, rows = parse(reader_client.get("/api/v1/analytics/users/@me/", {"format": "csv"}))
    assert rows[0]["user_id"] == "'@me"
    # Safe as it is: the cell starts with "r".
    assert 'runs_per_graph.=HYPERLINK("http://evil")' in header


def test_the_renderer_guards_header_cells_and_flattens_objects() -> None:
    data = {"results": [{"=a": "-b", "n": -1, "nested": {"x": "@y"}}, {"n": 2, "extra": None}]}

    text = CSVRenderer().render(data).decode()

    assert text == "'=a,n,nested.x,extra\r\n'-b,-1,'@y,\r\n,2,,\r\n"
    assert CSVRenderer().render([]) == b""  # no columns named: nothing to say


@pytest.mark.parametrize("path", [POPULAR, NODES, ACTIVE, "/api/v1/analytics/users/u-1/"])
def test_errors_stay_json_with_format_csv(reader_client: APIClient, path: str) -> None:
    response = reader_client.get(path, {"format": "csv", "window": "forever"})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "Content-Disposition" not in response
    assert list(response.json()) == ["window"]


@pytest.mark.parametrize("path", [POPULAR, NODES, ACTIVE, "/api/v1/analytics/users/u-1/"])
def test_csv_needs_the_read_scope(app_client: APIClient, path: str) -> None:
    response = app_client.get(path, {"format": "csv"})

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "read" in response.json()["detail"]
    unauthenticated = APIClient().get(path, {"format": "csv"})
    assert unauthenticated.status_code == 401
    assert unauthenticated["Content-Type"] == "application/json"


def test_an_unknown_format_is_404(reader_client: APIClient) -> None:
    assert reader_client.get(POPULAR, {"format": "xlsx"}).status_code == 404


def test_the_browsable_api_still_works(admin_user: Any, usage: None) -> None:
    client = APIClient()
    client.force_login(admin_user)

    response = client.get(POPULAR, HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "support-bot" in html
    assert "?format=csv" in html  # the format menu offers CSV
    assert client.get(POPULAR, {"format": "api"}).status_code == 200


# --- the usage page --------------------------------------------------------------------------


def test_the_usage_page_links_each_table_to_its_csv(usage: None) -> None:
    user = User.objects.create_user("vic", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)

    page = client.get(
        "/admin/analytics/usagereport/", {"days": "1", "graph": "support-bot", "user_id": "u-1"}
    )

    assert page.status_code == 200
    links = [
        link.replace("&amp;", "&")
        for link in re.findall(r'class="csv-download" href="([^"]+)"', page.content.decode())
    ]
    assert [link.split("?")[0] for link in links] == [
        ACTIVE,
        POPULAR,
        NODES,
        "/api/v1/analytics/users/u-1/",
    ]
    window = "start=2026-11-23T12%3A00%3A00%2B00%3A00&end=2026-11-24T12%3A00%3A00%2B00%3A00"
    assert all(f"format=csv&{window}" in link for link in links)
    assert "graph=support-bot" in links[0] and "graph=support-bot" in links[2]
    answers = [client.get(link) for link in links]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200]
    assert all(answer["Content-Type"] == "text/csv; charset=utf-8" for answer in answers)
    assert parse(answers[0])[1][0]["runs"] == "3"  # support-bot only
    assert parse(answers[1])[1] == [
        {"graph": "support-bot", "runs": "3", "errors": "1"},
        {"graph": "billing", "runs": "1", "errors": "0"},
    ]
    assert [row["node"] for row in parse(answers[2])[1]] == ["answer", "retrieve"]
    assert parse(answers[3])[1][0]["total_runs"] == "3"


def test_the_usage_page_without_a_user_has_three_links(usage: None, admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)

    html = client.get("/admin/analytics/usagereport/").content.decode()

    assert html.count('class="csv-download"') == 3
    assert "graph=" not in "".join(re.findall(r'class="csv-download" href="([^"]+)"', html))
