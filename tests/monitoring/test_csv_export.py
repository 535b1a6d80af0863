"""CSV export of graph runs and node runs: the API's ``export/*.csv`` and the admin's action
and link."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission, User
from django.http import StreamingHttpResponse
from django.test import Client
from rest_framework.test import APIClient

from monitoring.csv_export import NODE_RUN_COLUMNS, RUN_COLUMNS, cell, safe_text
from monitoring.models import GraphRun, NodeRun
from tests.conftest import graph_run
from versioning.models import Graph

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RUNS = "/api/v1/export/runs.csv"
NODE_RUNS = "/api/v1/export/node-runs.csv"


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


def content(response: Any) -> str:
    """The body of a streamed response (read once, then kept: a stream cannot be re-read)."""
    if not hasattr(response, "csv_text"):
        assert isinstance(response, StreamingHttpResponse)
        stream: Iterable[bytes] = response.streaming_content  # type: ignore[assignment]
        response.csv_text = b"".join(stream).decode()  # type: ignore[attr-defined]
    return str(response.csv_text)


def rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content(response))))


def header(response: Any) -> list[str]:
    return next(csv.reader(io.StringIO(content(response))))


@pytest.fixture
def runs(post_batch: Any) -> dict[str, dict[str, Any]]:
    """A successful support-bot run with two node runs (u-1, session a), a failed one with a
    parent (u-2), and a billing run; an hour apart, newest last."""
    parent = str(uuid.uuid4())
    batch = {
        "ok": graph_run(
            started_at=NOW - timedelta(hours=3),
            duration_ms=120.5,
            user_id="u-1",
            session_id="a",
            version="3",
            experiment="exp:b",
            nodes=[("retrieve", "success", 12.0), ("answer", "error", 30.0)],
        ),
        "failed": graph_run(
            status="error",
            started_at=NOW - timedelta(hours=2),
            user_id="u-2",
            session_id="b",
            error="boom, with a comma\nand a newline",
            parent_run_id=parent,
            nodes=[("retrieve", "error", 3.0)],
        ),
        "billing": graph_run("billing", started_at=NOW - timedelta(hours=1), user_id="u-1"),
    }
    assert post_batch(list(batch.values())).status_code == 200
    return batch


def test_it_exports_runs_with_a_header_newest_first(
    reader_client: APIClient, runs: dict[str, dict[str, Any]]
) -> None:
    response = reader_client.get(RUNS)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="lgmon-runs-2026-11-24.csv"'
    assert header(response) == list(RUN_COLUMNS)
    exported = rows(response)
    assert [row["run_id"] for row in exported] == [
        runs["billing"]["run_id"],
        runs["failed"]["run_id"],
        runs["ok"]["run_id"],
    ]
    ok = exported[2]
    assert ok == {
        "run_id": runs["ok"]["run_id"],
        "parent_run_id": "",
        "graph": "support-bot",
        "status": "success",
        "started_at": "2026-11-24T09:00:00Z",
        "duration_ms": "120.5",
        "user_id": "u-1",
        "session_id": "a",
        "version": "3",
        "experiment": "exp:b",
        "error": "",
        "node_runs": "2",
    }
    failed = exported[1]
    assert failed["error"] == "boom, with a comma\nand a newline"
    assert failed["parent_run_id"] == runs["failed"]["parent_run_id"]
    assert (failed["status"], failed["node_runs"]) == ("error", "1")
    assert exported[0]["node_runs"] == "0"


def test_it_exports_node_runs(reader_client: APIClient, runs: dict[str, dict[str, Any]]) -> None:
    response = reader_client.get(NODE_RUNS)

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="lgmon-node-runs-2026-11-24.csv"'
    )
    assert header(response) == list(NODE_RUN_COLUMNS)
    exported = rows(response)
    assert len(exported) == 3
    newest = exported[0]
    assert newest == {
        "run_id": runs["failed"]["node_runs"][0]["run_id"],
        "graph_run_id": runs["failed"]["run_id"],
        "graph": "support-bot",
        "node": "retrieve",
        "status": "error",
        "started_at": "2026-11-24T10:00:00Z",
        "duration_ms": "3.0",
        "attempt": "1",
        "error": "",
    }
    assert {row["node"] for row in exported[1:]} == {"retrieve", "answer"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"graph": "billing"}, ["billing"]),
        ({"status": "error"}, ["failed"]),
        ({"user_id": "u-1"}, ["billing", "ok"]),
        ({"session_id": "a"}, ["ok"]),
        ({"version": "3"}, ["ok"]),
        ({"since": "2026-11-24T10:00:00Z"}, ["billing", "failed"]),
        ({"until": "2026-11-24T10:00:00Z"}, ["ok"]),
        ({"since": "2026-11-24T09:30:00Z", "until": "2026-11-24T10:30:00+00:00"}, ["failed"]),
        ({"graph": "support-bot", "status": "success"}, ["ok"]),
        ({"graph": "", "user_id": ""}, ["billing", "failed", "ok"]),  # empty filters: ignored
        ({"graph": "nope"}, []),
    ],
)
def test_run_filters(
    reader_client: APIClient,
    runs: dict[str, dict[str, Any]],
    params: dict[str, str],
    expected: list[str],
) -> None:
    response = reader_client.get(RUNS, params)

    assert response.status_code == 200
    assert [row["run_id"] for row in rows(response)] == [runs[name]["run_id"] for name in expected]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"node": "answer"}, [("ok", "answer")]),
        ({"status": "error"}, [("failed", "retrieve"), ("ok", "answer")]),
        (
            {"graph": "support-bot", "node": "retrieve"},
            [("failed", "retrieve"), ("ok", "retrieve")],
        ),
        ({"user_id": "u-2"}, [("failed", "retrieve")]),
        ({"session_id": "a", "status": "success"}, [("ok", "retrieve")]),
        ({"graph": "billing"}, []),
        ({"since": "2026-11-24T09:30:00Z"}, [("failed", "retrieve")]),
    ],
)
def test_node_run_filters(
    reader_client: APIClient,
    runs: dict[str, dict[str, Any]],
    params: dict[str, str],
    expected: list[tuple[str, str]],
) -> None:
    response = reader_client.get(NODE_RUNS, params)

    assert response.status_code == 200
    got = sorted((row["graph_run_id"], row["node"]) for row in rows(response))
    assert got == sorted((runs[name]["run_id"], node) for name, node in expected)


@pytest.mark.parametrize("path", [RUNS, NODE_RUNS])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-11-24T10:00:00Z", "until": "2026-11-24T09:00:00Z"}, "until"),
        ({"graph": "g" * 201}, "graph"),
    ],
)
def test_bad_filters_answer_400_with_the_field(
    reader_client: APIClient, path: str, params: dict[str, str], field: str
) -> None:
    # Even when the client asks for CSV, the error is JSON.
    response = reader_client.get(path, params, HTTP_ACCEPT="text/csv")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "Content-Disposition" not in response
    body = response.json()
    assert list(body) == [field]
    assert isinstance(body[field], list) and body[field]


def test_bad_node_filter_on_the_node_run_export_only(reader_client: APIClient) -> None:
    assert reader_client.get(NODE_RUNS, {"node": "n" * 201}).json().keys() == {"node"}


@pytest.mark.parametrize("path", [RUNS, NODE_RUNS])
def test_it_needs_the_read_scope(app_client: APIClient, path: str) -> None:
    response = app_client.get(path)

    assert response.status_code == 403
    assert "read" in response.json()["detail"]
    assert APIClient().get(path).status_code == 401


@pytest.mark.parametrize("path", [RUNS, NODE_RUNS])
def test_the_accept_header_and_format_do_not_change_the_answer(
    reader_client: APIClient, runs: dict[str, dict[str, Any]], path: str
) -> None:
    plain = content(reader_client.get(path))
    answers = [
        reader_client.get(path, HTTP_ACCEPT="text/csv"),
        reader_client.get(path, HTTP_ACCEPT="text/html"),
        reader_client.get(path, {"format": "json"}),
    ]
    for response in answers:
        assert response.status_code == 200
        assert content(response) == plain


def test_an_empty_export_is_the_header_alone(reader_client: APIClient) -> None:
    assert content(reader_client.get(RUNS)) == ",".join(RUN_COLUMNS) + "\r\n"
    assert content(reader_client.get(NODE_RUNS)) == ",".join(NODE_RUN_COLUMNS) + "\r\n"


# --- formula injection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain = text", "plain = text"),
        ("", ""),
    ],
)
def test_text_cells_that_look_like_formulas_get_a_quote(value: str, written: str) -> None:
    assert safe_text(value) == written
    assert cell(value) == written


def test_numbers_and_times_are_written_as_they_are() -> None:
    assert cell(-1.5) == "-1.5"
    assert cell(None) == ""
    assert cell(True) == "true"
    assert cell(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_the_export_guards_against_formula_injection(
    reader_client: APIClient, post_batch: Any
) -> None:
    run = graph_run(
        "=cmd|' /C calc'!A0",
        status="error",
        user_id="+491234",
        session_id="@session",
        version="-1",
        experiment="\texp:a",
        error="=1+1",
        nodes=[("=node", "error", 1.0)],
    )
    assert post_batch([run]).status_code == 200

    exported = rows(reader_client.get(RUNS))[0]
    assert exported["graph"] == "'=cmd|' /C calc'!A0"
    assert exported["user_id"] == "'+491234"
    assert exported["session_id"] == "'@session"
    assert exported["version"] == "'-1"
    assert exported["experiment"] == "'\texp:a"
    assert exported["error"] == "'=1+1"
    assert exported["run_id"] == run["run_id"]  # not text from the app: untouched
    node = rows(reader_client.get(NODE_RUNS))[0]
    assert (node["graph"], node["node"]) == ("'=cmd|' /C calc'!A0", "'=node")


# --- streaming ---------------------------------------------------------------------------------


def test_it_streams_a_few_thousand_runs(reader_client: APIClient) -> None:
    graph = Graph.objects.create(name="bulk")
    start = NOW - timedelta(days=1)
    GraphRun.objects.bulk_create(
        GraphRun(
            run_id=uuid.uuid4(),
            graph=graph,
            status="success",
            started_at=start + timedelta(seconds=index),
            duration_ms=float(index),
            user_id=f"u-{index % 7}",
        )
        for index in range(4500)
    )
    some = list(GraphRun.objects.order_by("id")[:10])
    NodeRun.objects.bulk_create(
        NodeRun(graph_run=run, node="n", status="success", started_at=start, duration_ms=1.0)
        for run in some
        for _ in range(3)
    )

    response: Any = reader_client.get(RUNS)

    assert response.status_code == 200
    assert response.streaming
    pieces = list(response.streaming_content)
    assert len(pieces) > 5  # written as it goes, not in one piece
    exported = list(csv.DictReader(io.StringIO(b"".join(pieces).decode())))
    assert len(exported) == 4500
    assert exported[0]["duration_ms"] == "4499.0"
    assert exported[-1]["duration_ms"] == "0.0"
    assert sum(int(row["node_runs"]) for row in exported) == 30
    assert len(rows(reader_client.get(RUNS, {"user_id": "u-3"}))) == 643


# --- the admin ---------------------------------------------------------------------------------


def viewer() -> Client:
    user = User.objects.create_user("vic", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    return client


def test_a_viewer_exports_selected_runs_from_the_admin(
    reader_client: APIClient, runs: dict[str, dict[str, Any]]
) -> None:
    chosen = {runs["ok"]["run_id"], runs["billing"]["run_id"]}
    ids = GraphRun.objects.filter(run_id__in=chosen).values_list("pk", flat=True)

    response = viewer().post(
        "/admin/monitoring/graphrun/", {"action": "export_csv", "_selected_action": list(ids)}
    )

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="lgmon-runs-2026-11-24.csv"'
    assert header(response) == list(RUN_COLUMNS)
    exported = rows(response)
    assert [row["run_id"] for row in exported] == [
        runs["billing"]["run_id"],
        runs["ok"]["run_id"],
    ]
    # The same columns and cells as the API's export.
    assert exported == [row for row in rows(reader_client.get(RUNS)) if row["run_id"] in chosen]


def test_the_admin_exports_every_run_matching_the_filter(runs: dict[str, dict[str, Any]]) -> None:
    response = viewer().post(
        "/admin/monitoring/graphrun/?graph__id__exact="
        + str(Graph.objects.get(name="support-bot").pk),
        {
            "action": "export_csv",
            "select_across": "1",
            "_selected_action": list(GraphRun.objects.values_list("pk", flat=True)[:1]),
        },
    )

    assert response.status_code == 200
    assert {row["run_id"] for row in rows(response)} == {
        runs["ok"]["run_id"],
        runs["failed"]["run_id"],
    }


def test_a_viewer_exports_selected_node_runs_from_the_admin(
    runs: dict[str, dict[str, Any]],
) -> None:
    answer = NodeRun.objects.get(node="answer")

    response = viewer().post(
        "/admin/monitoring/noderun/", {"action": "export_csv", "_selected_action": [answer.pk]}
    )

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        'attachment; filename="lgmon-node-runs-2026-11-24.csv"'
    )
    assert rows(response) == [
        {
            "run_id": str(answer.run_id),
            "graph_run_id": runs["ok"]["run_id"],
            "graph": "support-bot",
            "node": "answer",
            "status": "error",
            "started_at": "2026-11-24T09:00:00Z",
            "duration_ms": "30.0",
            "attempt": "1",
            "error": "",
        }
    ]


def _export_link(client: Client, page: str) -> str:
    html = client.get(page).content.decode()
    match = re.search(r'<a href="([^"]+)" class="csv-export-link"', html)
    assert match, html
    return match.group(1).replace("&amp;", "&")


def test_the_run_list_links_to_the_export_of_its_filters(
    runs: dict[str, dict[str, Any]],
) -> None:
    client = viewer()
    graph = Graph.objects.get(name="support-bot")

    assert _export_link(client, "/admin/monitoring/graphrun/") == RUNS
    link = _export_link(
        client, f"/admin/monitoring/graphrun/?status__exact=error&graph__id__exact={graph.pk}"
    )
    assert link == f"{RUNS}?status=error&graph=support-bot"
    response = client.get(link)
    assert response.status_code == 200  # the API takes the admin's session
    assert [row["run_id"] for row in rows(response)] == [runs["failed"]["run_id"]]


@pytest.mark.parametrize(
    ("query", "since", "until"),
    [
        ("started_at__year=2026", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        (
            "started_at__year=2026&started_at__month=12",
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ),
        (
            "started_at__year=2026&started_at__month=11&started_at__day=24",
            "2026-11-24T00:00:00Z",
            "2026-11-25T00:00:00Z",
        ),
        (  # the "Today" choice of the date filter
            "started_at__gte=2026-11-24+00%3A00%3A00%2B00%3A00"
            "&started_at__lt=2026-11-25+00%3A00%3A00%2B00%3A00",
            "2026-11-24T00:00:00Z",
            "2026-11-25T00:00:00Z",
        ),
        (  # both: the narrower bounds
            "started_at__year=2026&started_at__month=11"
            "&started_at__gte=2026-11-20+00%3A00%3A00%2B00%3A00",
            "2026-11-20T00:00:00Z",
            "2026-12-01T00:00:00Z",
        ),
    ],
)
def test_the_export_link_keeps_the_date_filters(
    runs: dict[str, dict[str, Any]], query: str, since: str, until: str
) -> None:
    link = _export_link(viewer(), f"/admin/monitoring/graphrun/?{query}")

    assert link == f"{RUNS}?since={since.replace(':', '%3A')}&until={until.replace(':', '%3A')}"


def test_the_node_run_list_links_to_its_export(runs: dict[str, dict[str, Any]]) -> None:
    client = viewer()
    graph = Graph.objects.get(name="support-bot")

    link = _export_link(
        client,
        f"/admin/monitoring/noderun/?status__exact=success&graph_run__graph__id__exact={graph.pk}",
    )

    assert link == f"{NODE_RUNS}?status=success&graph=support-bot"
    assert [row["node"] for row in rows(client.get(link))] == ["retrieve"]


def test_no_export_link_for_staff_without_a_role(runs: dict[str, dict[str, Any]]) -> None:
    user = User.objects.create_user("nobody", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_noderun"))
    client = Client()
    client.force_login(user)

    response = client.get("/admin/monitoring/noderun/")

    assert response.status_code == 200
    assert "csv-export-link" not in response.content.decode()
