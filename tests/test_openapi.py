"""The OpenAPI schema (drf-spectacular) and its docs pages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from tests.conftest import key_client

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    GENERATOR_STATS.reset()
    generator = SchemaGenerator()  # type: ignore[no-untyped-call]
    generated: dict[str, Any] = generator.get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    assert not GENERATOR_STATS, "schema generation emitted warnings or errors"
    return generated


def _api_v1_operations() -> dict[str, set[str]]:
    """Every endpoint under /api/v1/ in the URL configuration, as OpenAPI paths (``{name}``
    parameters, ``{id}`` for ``pk``) with the HTTP methods its view handles."""
    found: dict[str, set[str]] = {}

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern).removeprefix("^")
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
                continue
            if not route.startswith("api/v1/") or "format" in route or pattern.name == "api-root":
                continue  # format-suffix variants and the router's index are not operations
            route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)  # regex groups
            route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)  # path converters
            route = route.removesuffix("$").removesuffix("?").replace("{pk}", "{id}")
            callback: Any = pattern.callback
            if hasattr(callback, "actions"):
                # DRF adds "head" to a viewset's actions after its first GET: not an operation.
                methods = set(callback.actions) - {"head"}
            else:
                view = callback.view_class
                methods = {name for name in HTTP_METHODS if hasattr(view, name)}
            found.setdefault("/" + route, set()).update(methods)

    walk(get_resolver().url_patterns, "")
    return found


def test_the_schema_validates_with_no_warnings(tmp_path: Path) -> None:
    GENERATOR_STATS.reset()
    out = tmp_path / "schema.json"
    # Raises CommandError on any warning or error, and on an invalid schema.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", out
    )
    validate_schema(json.loads(out.read_text()))  # type: ignore[no-untyped-call]


def test_every_api_endpoint_is_described(schema: dict[str, Any]) -> None:
    expected = _api_v1_operations()
    assert len(expected) > 25  # the walk found the API
    described = {
        path: {method for method in operations if method in HTTP_METHODS}
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v1/")
    }
    assert described == expected


def test_every_operation_declares_its_responses_and_auth(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["type"] == "http"
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert {"ApiKeyAuth": []} in operation["security"], where
            assert {} not in operation["security"], where  # nothing is anonymous
            responses = operation["responses"]
            assert {"401", "403"} <= responses.keys(), where
            success = [code for code in responses if code.startswith("2")]
            assert success, where
            for code in success:
                content = responses[code].get("content", {})
                # The CSV exports answer CSV only; everything else JSON (and maybe CSV too).
                expected = "text/csv" if path.endswith(".csv") else "application/json"
                assert expected in content, f"{where} {code}"
    paths = schema["paths"]
    assert {"404", "409"} <= paths["/api/v1/alerts/{id}/resolve/"]["post"]["responses"].keys()
    assert "404" in paths["/api/v1/runs/{run_id}/"]["get"]["responses"]
    assert "404" in paths["/api/v1/graphs/{graph_name}/resolve/"]["get"]["responses"]
    assert "400" in paths["/api/v1/stats/"]["get"]["responses"]
    export = paths["/api/v1/export/runs.csv"]["get"]["responses"]
    assert list(export["200"]["content"]) == ["text/csv"]
    assert list(export["400"]["content"]) == ["application/json"]
    popular = paths["/api/v1/analytics/popular-graphs/"]["get"]["responses"]
    assert list(popular["200"]["content"]) == ["application/json", "text/csv"]
    assert list(popular["400"]["content"]) == ["application/json"]


def test_query_parameters_and_bodies_are_described(schema: dict[str, Any]) -> None:
    def parameters(path: str, method: str = "get") -> set[str]:
        return {p["name"] for p in schema["paths"][path][method].get("parameters", [])}

    assert {"window", "start", "end", "graph", "node"} <= parameters("/api/v1/stats/")
    assert "step" in parameters("/api/v1/stats/series/")
    assert {"days", "limit"} <= parameters("/api/v1/analytics/popular-graphs/")
    assert {"state", "severity", "label", "cursor"} <= parameters("/api/v1/alerts/")
    assert {"status", "since", "until", "graph"} <= parameters("/api/v1/runs/")
    assert {"status", "since", "until", "graph", "user_id"} <= parameters("/api/v1/export/runs.csv")
    assert "node" in parameters("/api/v1/export/node-runs.csv")
    assert "format" in parameters("/api/v1/analytics/nodes/")
    assert "against" in parameters("/api/v1/graphs/{graph_name}/versions/{number}/diff/")
    ingest = schema["paths"]["/api/v1/ingest/"]["post"]
    body = ingest["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    batch = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"graph_runs", "metric_points"} <= batch["properties"].keys()
    assert {"200", "207", "400", "413"} <= ingest["responses"].keys()


def test_the_schema_endpoint_answers_a_read_key(db: None) -> None:
    client = key_client("read", name="reader")
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")  # YAML
    assert b"title: lgmon API" in response.content

    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    document = json.loads(response.content)
    validate_schema(document)  # type: ignore[no-untyped-call]
    assert "/api/v1/ingest/" in document["paths"]


def test_the_schema_needs_read_access(db: None) -> None:
    assert APIClient().get("/api/schema/").status_code == 401
    assert key_client("ingest", name="app").get("/api/schema/").status_code == 403
    assert APIClient().get("/api/docs/").status_code == 401


@pytest.mark.parametrize(
    ("url", "asset"),
    [
        ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_the_docs_pages_render_offline_for_staff(
    client: Any, admin_user: Any, url: str, asset: str
) -> None:
    client.force_login(admin_user)
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert asset in html
    # collectstatic finds the asset, so the page needs no internet access.
    assert finders.find(asset.removeprefix("/static/")) is not None
    assert "/api/schema/" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in html
    # The page's schema request, with the same session, is allowed.
    assert client.get("/api/schema/").status_code == 200
