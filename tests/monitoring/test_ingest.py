from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from monitoring.models import ApiKey, GraphRun, MetricPoint, MinuteRollup, NodeRun
from tests.conftest import graph_run, make_key, uses_postgres
from versioning.models import Graph

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


def _run(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("started_at", NOW - timedelta(seconds=10))
    return graph_run(**kwargs)


def test_it_stores_graph_runs_with_their_node_runs(post_batch: Any) -> None:
    run = _run(
        nodes=[("retrieve", "success", 40.0), ("answer", "error", 70.0)],
        status="error",
        user_id="u-1",
        session_id="s-1",
        version="3",
        error="boom",
        metadata={"tenant": "acme"},
    )
    response = post_batch([run])

    assert response.status_code == 200
    assert response.json()["summary"] == {"created": 1, "duplicate": 0, "rejected": 0}
    assert response.json()["graph_runs"] == [
        {"index": 0, "run_id": run["run_id"], "result": "created"}
    ]
    stored = GraphRun.objects.get(run_id=run["run_id"])
    assert (stored.graph.name, stored.status, stored.user_id, stored.session_id) == (
        "support-bot",
        "error",
        "u-1",
        "s-1",
    )
    assert (stored.version, stored.error, stored.metadata) == ("3", "boom", {"tenant": "acme"})
    assert stored.received_at == NOW
    assert sorted(stored.node_runs.values_list("node", "status", "duration_ms")) == [
        ("answer", "error", 70.0),
        ("retrieve", "success", 40.0),
    ]


def test_it_accepts_epoch_seconds_and_naive_timestamps_as_utc(post_batch: Any) -> None:
    first = _run()
    first["started_at"] = (NOW - timedelta(seconds=3)).timestamp()
    second = _run()
    second["started_at"] = "2026-11-24T12:00:00"
    assert post_batch([first, second]).status_code == 200
    assert GraphRun.objects.get(run_id=first["run_id"]).started_at == NOW - timedelta(seconds=3)
    assert GraphRun.objects.get(run_id=second["run_id"]).started_at == datetime(
        2026, 11, 24, 12, 0, tzinfo=UTC
    )


def test_it_stores_nothing_twice_when_a_batch_is_retried(post_batch: Any) -> None:
    runs = [_run(nodes=[("a", "success", 1.0)]) for _ in range(3)]
    assert post_batch(runs).status_code == 200

    response = post_batch([*runs, _run()])

    assert response.status_code == 200
    assert [item["result"] for item in response.json()["graph_runs"]] == [
        "duplicate",
        "duplicate",
        "duplicate",
        "created",
    ]
    assert GraphRun.objects.count() == 4
    assert NodeRun.objects.count() == 3
    assert MinuteRollup.objects.get(node="", status="success").count == 4


def test_it_marks_a_run_repeated_within_one_batch_as_duplicate(post_batch: Any) -> None:
    run = _run()
    response = post_batch([run, dict(run)])
    assert [item["result"] for item in response.json()["graph_runs"]] == ["created", "duplicate"]
    assert GraphRun.objects.count() == 1


def test_it_stores_good_items_and_reports_field_errors_for_bad_ones(post_batch: Any) -> None:
    good = _run(nodes=[("a", "success", 3.0)])
    bad_node = _run(nodes=[("a", "success", 3.0), ("b", "exploded", -1)])
    response = post_batch(
        [good, {"graph": "x"}, bad_node],
        metric_points=[
            {"name": "queue.depth", "value": 3, "timestamp": NOW.isoformat(), "labels": {}},
            {"name": "queue.depth", "value": "three", "timestamp": NOW.isoformat()},
        ],
    )

    assert response.status_code == 207
    body = response.json()
    assert body["summary"] == {"created": 2, "duplicate": 0, "rejected": 3}
    assert body["graph_runs"][1]["errors"] == {
        "run_id": ["This field is required."],
        "status": ["This field is required."],
        "started_at": ["This field is required."],
        "duration_ms": ["This field is required."],
    }
    assert body["graph_runs"][2]["errors"] == {
        "node_runs": {
            "1": {
                "status": ["Must be one of: cancelled, error, interrupted, success."],
                "duration_ms": ["Must be between 0 and 604800000 milliseconds."],
            }
        }
    }
    assert body["metric_points"][1]["errors"] == {"value": ["Must be a number."]}
    assert list(GraphRun.objects.values_list("run_id", flat=True)) == [uuid.UUID(good["run_id"])]
    assert NodeRun.objects.count() == 1
    assert list(MetricPoint.objects.values_list("name", "value")) == [("queue.depth", 3.0)]


def test_it_answers_400_when_every_item_is_rejected(post_batch: Any) -> None:
    response = post_batch([{"run_id": "not-a-uuid"}])
    assert response.status_code == 400
    assert response.json()["graph_runs"][0]["errors"]["run_id"] == ["Must be a UUID string."]
    assert not GraphRun.objects.exists()


BAD_RUN_FIELDS = [
    ("status", True, "Must be one of"),
    ("duration_ms", "12", "Must be a number."),
    ("duration_ms", True, "Must be a number."),
    ("duration_ms", 1e300, "Must be between"),
    ("started_at", "yesterday", "Must be an ISO 8601"),
    ("started_at", 1e20, "Must be an ISO 8601"),
    ("started_at", "2026-11-24T13:00:00+00:00", "Is in the future"),
    ("started_at", "2020-01-01T00:00:00Z", "Is older than the retention"),
    ("started_at", "9999-12-31T23:59:59-14:00", "Date-time out of range"),
    ("graph", "g" * 201, "no more than 200 characters"),
    ("graph", ["a"], "Must be a string."),
    ("user_id", "nul\x00byte", "Must not contain NUL"),
    ("user_id", 42, "Must be a string."),
    ("metadata", [1, 2], "Must be a JSON object."),
    ("metadata", {"k": "x" * 20_000}, "Must be at most 16384 bytes"),
    ("metadata", {"k": "a\x00b"}, "Must not contain NUL"),
    ("parent_run_id", 5, "Must be a UUID string."),
    ("node_runs", {"a": 1}, "Must be a list."),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_RUN_FIELDS)
def test_it_rejects_bad_fields_with_a_clear_message(
    post_batch: Any, field: str, value: Any, message: str
) -> None:
    good = _run()
    bad = _run(**{field: value})
    response = post_batch([good, bad])

    assert response.status_code == 207
    errors = response.json()["graph_runs"][1]["errors"]
    assert list(errors) == [field]
    assert message in str(errors[field])
    assert GraphRun.objects.filter(run_id=good["run_id"]).exists()


def test_it_truncates_long_error_texts_instead_of_rejecting_them(post_batch: Any) -> None:
    run = _run(status="error", error="x" * 50_000 + "\x00")
    assert post_batch([run]).status_code == 200
    stored = GraphRun.objects.get(run_id=run["run_id"]).error
    assert len(stored) == 10_000
    assert stored.endswith("…")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"not json", "application/json", "Body is not valid JSON"),
        (b'{"graph_runs": [NaN]}', "application/json", "Body is not valid JSON"),
        (b'{"graph_runs": ["\xff\xfe"]}', "application/json", "Body is not valid JSON"),
        (b'"\\ud800"', "application/json", "Body is not valid JSON"),
        (b"[1, 2]", "application/json", "Body must be a JSON object"),
        (b'{"graph_runs": {}}', "application/json", "'graph_runs' must be a list"),
        (b"{}", "application/json", "holds no graph_runs and no metric_points"),
        (b"", "text/plain", "Body is not valid JSON"),
    ],
)
def test_it_answers_400_to_unusable_bodies(
    app_client: APIClient, body: bytes, content_type: str, message: str
) -> None:
    response = app_client.post("/api/v1/ingest/", body, content_type=content_type)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_it_answers_413_past_the_item_limits(post_batch: Any, settings: Any) -> None:
    settings.LGMON_INGEST_MAX_GRAPH_RUNS = 2
    response = post_batch([_run() for _ in range(3)])
    assert response.status_code == 413
    assert response.json()["detail"] == "Too many graph_runs: 3 sent, at most 2 per batch."
    assert not GraphRun.objects.exists()


def test_it_rejects_runs_past_the_node_run_budget(post_batch: Any, settings: Any) -> None:
    settings.LGMON_INGEST_MAX_NODE_RUNS = 3
    first = _run(nodes=[("a", "success", 1.0)] * 2)
    second = _run(nodes=[("a", "success", 1.0)] * 2)
    response = post_batch([first, second])
    assert response.status_code == 207
    assert response.json()["graph_runs"][1]["errors"] == {
        "node_runs": ["Too many node runs in this batch."]
    }


def test_it_answers_413_past_the_body_size_limit(app_client: APIClient, settings: Any) -> None:
    settings.LGMON_INGEST_MAX_BODY_BYTES = 1000
    response = app_client.post(
        "/api/v1/ingest/", {"graph_runs": [_run(error="x" * 2000)]}, format="json"
    )
    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["detail"]


def test_it_accepts_gzip_bodies(app_client: APIClient) -> None:
    import orjson

    run = _run()
    body = gzip.compress(orjson.dumps({"graph_runs": [run]}))
    response = app_client.post(
        "/api/v1/ingest/", body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.status_code == 200
    assert GraphRun.objects.filter(run_id=run["run_id"]).exists()


def test_it_requires_an_api_key_with_the_ingest_scope(reader_client: APIClient) -> None:
    body = {"graph_runs": [_run()]}
    assert APIClient().post("/api/v1/ingest/", body, format="json").status_code == 401
    response = reader_client.post("/api/v1/ingest/", body, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "This API key lacks the 'ingest' scope."
    assert not GraphRun.objects.exists()


def test_it_refuses_revoked_and_unknown_keys() -> None:
    key, raw = make_key("ingest")
    key.revoke()
    for credentials in (raw, "lgm_nothing_here", "garbage"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {credentials}")
        response = client.post("/api/v1/ingest/", {"graph_runs": [_run()]}, format="json")
        assert response.status_code == 401


def test_it_records_when_a_key_was_last_used_at_most_once_a_minute(post_batch: Any) -> None:
    post_batch([_run()])
    key = ApiKey.objects.get(name="app")
    assert key.last_used_at == NOW
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False):
        post_batch([_run()])
    key.refresh_from_db()
    assert key.last_used_at == NOW
    with time_machine.travel(NOW + timedelta(seconds=90), tick=False):
        post_batch([_run()])
    key.refresh_from_db()
    assert key.last_used_at == NOW + timedelta(seconds=90)


def test_it_uses_a_constant_number_of_queries_per_batch(app_client: APIClient) -> None:
    def queries_for(count: int) -> int:
        runs = [_run(nodes=[("a", "success", 1.0), ("b", "error", 2.0)]) for _ in range(count)]
        with CaptureQueriesContext(connection) as captured:
            response = app_client.post("/api/v1/ingest/", {"graph_runs": runs}, format="json")
        assert response.status_code == 200
        return len(captured)

    queries_for(1)  # creates the graph and stamps the key's last use
    # SQLite caps a statement at 999 parameters, so its multi-row inserts split sooner.
    assert queries_for(5) == queries_for(500 if uses_postgres() else 60)


def test_it_stores_tabs_newlines_and_backslashes_unchanged(post_batch: Any) -> None:
    tricky = 'a\tb\nc\\d\re "q" \\N'
    run = _run(
        status="error",
        user_id=tricky,
        error=tricky,
        metadata={"k": tricky},
        nodes=[(tricky, "success", 1.0)],
    )
    run["run_id"] = run["run_id"].upper()
    assert post_batch([run]).status_code == 200
    stored = GraphRun.objects.get(run_id=run["run_id"].lower())
    assert (stored.user_id, stored.error, stored.metadata) == (tricky, tricky, {"k": tricky})
    assert stored.node_runs.get().node == tricky


@pytest.mark.django_db(transaction=True)  # the foreign key is checked at a real commit
def test_it_recovers_when_a_cached_graph_was_deleted(post_batch: Any) -> None:
    assert post_batch([_run(graph="ephemeral")]).status_code == 200
    Graph.objects.filter(name="ephemeral").delete()
    run = _run(graph="ephemeral")
    assert post_batch([run]).status_code == 200
    assert GraphRun.objects.get(run_id=run["run_id"]).graph.name == "ephemeral"
