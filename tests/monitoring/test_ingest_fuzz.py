"""Whatever JSON an app sends, ingest answers with a 2xx or 4xx and never loses good items."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from monitoring.models import GraphRun
from tests.conftest import graph_run

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "run_id",
    "parent_run_id",
    "graph",
    "status",
    "started_at",
    "duration_ms",
    "user_id",
    "session_id",
    "version",
    "experiment",
    "error",
    "metadata",
    "node_runs",
]
NODE_FIELDS = ["run_id", "node", "status", "started_at", "duration_ms", "attempt", "error"]


def _post(client: APIClient, body: Any) -> Any:
    return client.post("/api/v1/ingest/", body, format="json")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_it_never_fails_on_any_value_of_a_run_field(
    app_client: APIClient, field: str, value: Any
) -> None:
    good, odd = graph_run(), graph_run(**{field: value})
    response = _post(app_client, {"graph_runs": [good, odd]})
    assert response.status_code in (200, 207)
    assert GraphRun.objects.filter(run_id=good["run_id"]).exists()


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(NODE_FIELDS), value=json_values)
def test_it_never_fails_on_any_value_of_a_node_run_field(
    app_client: APIClient, field: str, value: Any
) -> None:
    odd = graph_run(nodes=[("a", "success", 1.0)])
    odd["node_runs"][0][field] = value
    response = _post(app_client, {"graph_runs": [graph_run(), odd]})
    assert response.status_code in (200, 207)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=json_values)
def test_it_never_fails_on_any_body(app_client: APIClient, body: Any) -> None:
    response = _post(app_client, body)
    assert 200 <= response.status_code < 500
    maybe_points = {"metric_points": [body]}
    assert 200 <= _post(app_client, maybe_points).status_code < 500
