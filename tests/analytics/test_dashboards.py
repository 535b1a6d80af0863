"""The admin dashboards: their figures (``analytics.dashboards``, read from the rollups) and
their pages (``analytics.views``), plus the charts of an experiment's results page."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Q
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from analytics import dashboards
from analytics.dashboards import Window, WindowError, parse_window
from monitoring import ingest, rollups, system
from monitoring.models import Alert, AlertRule, MetricPoint
from monitoring.rollups import Scope
from tests.conftest import graph_run
from versioning import experiments, result_charts, services
from versioning.models import Experiment, Graph, Variant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 4, 12, 30, 20, tzinfo=UTC)
OVERVIEW = reverse("dashboards:overview")
SYSTEM = reverse("dashboards:system")


def graph_url(name: str, **query: str) -> str:
    url = reverse("dashboards:graph", args=[name])
    if query:
        url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return url


def chart_data(content: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="dashboard-data" type="application/json">(.*?)</script>', content, re.S
    )
    assert found, "no dashboard-data on the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def charts_by_canvas(charts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {chart["canvas"]: chart for chart in charts}


def values(chart: dict[str, Any], dataset: int = 0) -> list[Any]:
    return [y for _, y in chart["datasets"][dataset]["data"]]


def definition(*nodes: str) -> dict[str, Any]:
    names = ["__start__", *nodes, "__end__"]
    return {
        "nodes": [{"name": node} for node in nodes],
        "edges": [[a, b] for a, b in itertools.pairwise(names)],
    }


def alert(graph: str, *, state: str = "firing", fired_at: Any = None, **fields: Any) -> Alert:
    rule, _ = AlertRule.objects.get_or_create(
        name=f"{graph} errors", defaults={"metric": "error_rate", "threshold": 0.1}
    )
    return Alert.objects.create(
        rule=rule,
        fingerprint=f"{graph}-{Alert.objects.count()}",
        labels={"alertname": rule.name, "graph": graph},
        state=state,
        fired_at=fired_at,
        active_at=fired_at,
        **fields,
    )


@pytest.fixture
def traffic(post_batch: Callable[..., Any]) -> dict[str, Any]:
    """support-bot: 8 runs over the last 20 minutes, 2 failing, with a fast and a slow node;
    research: 3 runs; old-graph: one run two days ago only."""
    now = timezone.now()
    runs = []
    for index in range(8):
        started = now - timedelta(minutes=2 * index + 1)
        runs.append(
            graph_run(
                "support-bot",
                status="error" if index < 2 else "success",
                started_at=started,
                duration_ms=100.0 + 10 * index,
                nodes=[("classify", "success", 5.0 + index), ("search_docs", "success", 200.0)],
            )
        )
    runs += [graph_run("research", started_at=now - timedelta(minutes=3)) for _ in range(3)]
    runs.append(graph_run("old-graph", started_at=now - timedelta(days=2)))
    response = post_batch(runs)
    assert response.status_code == 200, response.content
    return {"now": now}


# --- windows -------------------------------------------------------------------------------------


def test_a_window_is_a_named_span_ending_now_or_a_custom_start_and_end() -> None:
    assert parse_window({}, NOW) == Window(NOW - timedelta(hours=1), NOW, "1h")
    assert parse_window({"window": "24h"}, NOW).start == NOW - timedelta(hours=24)
    assert parse_window({"window": "7d"}, NOW).start == NOW - timedelta(days=7)
    custom = parse_window({"start": "2026-03-01T10:00", "end": "2026-03-01T16:00"}, NOW)
    assert (custom.start, custom.end, custom.key) == (
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        datetime(2026, 3, 1, 16, tzinfo=UTC),
        "custom",
    )
    open_ended = parse_window({"start": "2026-03-04T11:00:00+01:00"}, NOW)
    assert (open_ended.start, open_ended.end) == (datetime(2026, 3, 4, 10, tzinfo=UTC), NOW)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window": "5y"}, "Unknown window"),
        ({"start": "yesterday"}, "not a date"),
        ({"start": "2026-13-01T00:00"}, "not a date"),
        ({"end": "2026-03-01T00:00"}, "needs a start"),
        ({"start": "2026-03-02T00:00", "end": "2026-03-01T00:00"}, "before the end"),
        ({"start": "2026-01-01T00:00", "end": "2026-03-01T00:00"}, "at most 31 days"),
    ],
)
def test_a_bad_window_says_why(params: dict[str, str], message: str) -> None:
    with pytest.raises(WindowError, match=message):
        parse_window(params, NOW)


@pytest.mark.parametrize(
    ("span", "step"),
    [
        (timedelta(hours=1), timedelta(minutes=1)),
        (timedelta(hours=3), timedelta(minutes=1)),
        (timedelta(hours=24), timedelta(minutes=5)),
        (timedelta(days=2), timedelta(minutes=5)),
        (timedelta(days=7), timedelta(hours=1)),
    ],
)
def test_the_step_grows_with_the_window(span: timedelta, step: timedelta) -> None:
    assert Window(NOW - span, NOW, "custom").step == step


# --- figures -------------------------------------------------------------------------------------


def test_the_overview_has_each_graph_with_runs_in_the_last_hour(traffic: dict[str, Any]) -> None:
    services.register("support-bot", definition("classify", "search_docs"))  # v1, active
    alert("support-bot", fired_at=traffic["now"])
    alert("support-bot", state="pending")
    alert("research", state="inactive")

    data = dashboards.overview(timezone.now())

    assert [row["name"] for row in data["graphs"]] == ["support-bot", "research"]
    bot, research = data["graphs"]
    assert (bot["runs"], bot["errors"], bot["error_rate"]) == (8, 2, 0.25)
    assert bot["p95_ms"] == pytest.approx(160, rel=0.02)  # "lower" rank 6 of 0..7
    assert (bot["active_version"], bot["open_alerts"]) == (1, 1)
    assert (research["runs"], research["active_version"], research["open_alerts"]) == (3, None, 0)
    assert data["quiet_graphs"] == 1
    charts = charts_by_canvas(data["charts"])
    assert len(charts) == 6
    runs = charts["overview-0-runs"]
    assert runs["small"] and runs["points"] in (60, 61)
    assert sum(values(runs)) == 8  # one-minute steps: runs per minute add up to the runs
    errors = [v for v in values(charts["overview-0-errors"]) if v is not None]
    assert sorted(errors) == [0, 0, 0, 0, 0, 0, 100, 100]
    assert [a["state"] for a in data["alerts"]] == ["firing", "pending"]


def test_the_overview_lists_running_experiments(traffic: dict[str, Any]) -> None:
    v1 = services.register("support-bot", definition("classify")).version
    v2 = services.register("support-bot", definition("classify", "search_docs")).version
    experiment = Experiment.objects.create(graph=v1.graph, key="adds-search")
    Variant.objects.create(experiment=experiment, position=0, name="control", version=v1)
    Variant.objects.create(experiment=experiment, position=1, name="treatment", version=v2)
    Experiment.objects.filter(id=experiment.id).update(status="running", started_at=NOW)

    found = dashboards.overview(timezone.now())["experiments"]

    assert [(e["key"], e["graph"]) for e in found] == [("adds-search", "support-bot")]
    assert found[0]["variants"] == ["control v1 (50%)", "treatment v2 (50%)"]


def test_the_graph_page_has_series_node_table_and_markers(traffic: dict[str, Any]) -> None:
    now = timezone.now()
    graph = Graph.objects.get(name="support-bot")
    services.register("support-bot", definition("classify"))
    v2 = services.register("support-bot", definition("classify", "search_docs")).version
    services.activate(v2, actor="alice")
    alert("support-bot", fired_at=now - timedelta(minutes=10), resolved_at=now)
    alert("research", fired_at=now - timedelta(minutes=5))  # another graph's: not marked

    data = dashboards.graph_page(graph, parse_window({}, timezone.now()))

    assert [row["node"] for row in data["nodes"]] == ["search_docs", "classify"]
    assert data["node"] == "search_docs"  # the slowest at p95, by default
    assert data["totals"]["runs"] == 8
    charts = charts_by_canvas(data["charts"])
    assert set(charts) == {
        "graph-throughput",
        "graph-errors",
        "graph-latency",
        "node-latency",
        "nodes-p95",
    }
    assert sum(values(charts["graph-throughput"])) == 8
    assert [d["label"] for d in charts["graph-latency"]["datasets"]] == ["p50", "p95", "p99"]
    assert [d["label"] for d in charts["nodes-p95"]["datasets"]] == ["search_docs", "classify"]
    assert {v for v in values(charts["node-latency"], 1) if v is not None} == {200.0}
    kinds = [marker["kind"] for marker in data["markers"]]
    assert sorted(kinds) == ["alert-firing", "alert-resolved", "version", "version"]
    assert all(chart["markers"] == data["markers"] for chart in data["charts"])
    assert any("v1 → v2" in marker["label"] for marker in data["markers"])

    chosen = dashboards.graph_page(graph, parse_window({}, now), node="classify")
    assert chosen["node"] == "classify"
    node_chart = charts_by_canvas(chosen["charts"])["node-latency"]
    assert {v for v in values(node_chart, 0) if v is not None} <= {5.0 + i for i in range(8)}
    unknown = dashboards.graph_page(graph, parse_window({}, now), node="nope")
    assert unknown["node"] == "search_docs"


@pytest.mark.parametrize("step", [timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1)])
def test_the_dashboards_series_agree_with_the_rollups_series(
    post_batch: Callable[..., Any], step: timedelta
) -> None:
    """The dashboards add up every step at once; ``rollups.series`` step by step."""
    now = timezone.now()
    runs = [
        graph_run(
            "support-bot",
            status=("error", "success", "success", "interrupted")[index % 4],
            started_at=now - timedelta(minutes=7 * index + 1, seconds=index),
            duration_ms=3.0 + (index * 37) % 900,
            nodes=[("classify", "success", 1.0 + index % 5)],
        )
        for index in range(120)
    ]
    post_batch(runs)
    start = now - timedelta(hours=14)
    expected = rollups.series(start, now, step, Scope("support-bot"))

    for condition, key, name, scope in (
        (Q(graph__name="support-bot", node=""), "graph__name", "support-bot", Scope("support-bot")),
        (Q(graph__name="support-bot", node="classify"), "node", "classify", None),
    ):
        slots, groups = dashboards._grouped_series(start, now, step, condition, key)
        figures = groups[name].figures()
        if scope is None:
            expected = rollups.series(start, now, step, Scope("support-bot", "classify"))
        assert slots == [row["start"] for row in expected]
        for got, want in zip(figures, expected, strict=True):
            assert (got["runs"], got["errors"]) == (want["runs"], want["errors"])
            assert got["error_rate"] == want["error_rate"]
            for quantile in ("p50", "p95", "p99"):
                assert got["latency_ms"][quantile] == want["latency_ms"][quantile]
        total = groups[name].total()
        window = rollups.window_stats(slots[0], now, scope or Scope("support-bot", "classify"))
        assert total["runs"] == window["runs"] and total["errors"] == window["errors"]
        assert total["latency_ms"]["p95"] == window["latency_ms"]["p95"]


@pytest.mark.parametrize(("key", "points"), [("24h", 288), ("7d", 168)])
def test_longer_windows_take_longer_steps(traffic: dict[str, Any], key: str, points: int) -> None:
    graph = Graph.objects.get(name="support-bot")

    data = dashboards.graph_page(graph, parse_window({"window": key}, timezone.now()))

    throughput = charts_by_canvas(data["charts"])["graph-throughput"]
    assert throughput["points"] in (points, points + 1)
    step_minutes = data["step_s"] / 60
    assert sum(values(throughput)) * step_minutes == pytest.approx(8, rel=1e-3)


def test_a_graph_without_runs_in_the_window_has_empty_series() -> None:
    graph = Graph.objects.create(name="idle")

    data = dashboards.graph_page(graph, parse_window({}, NOW))

    assert data["nodes"] == [] and data["node"] is None
    charts = charts_by_canvas(data["charts"])
    assert set(charts) == {"graph-throughput", "graph-errors", "graph-latency"}
    assert set(values(charts["graph-throughput"])) == {0}
    assert set(values(charts["graph-errors"])) == {None}


def test_the_system_page_bins_cpu_and_memory_per_host_and_step() -> None:
    start = NOW - timedelta(hours=1)
    points = []
    for minute in range(60):
        moment = start + timedelta(minutes=minute, seconds=30)
        for host, busy in (("web-1", 10.0), ("web-2", 50.0)):
            points += [
                MetricPoint(
                    name=system.CPU_PERCENT,
                    timestamp=moment,
                    value=busy + minute % 2,
                    labels={"host": host},
                ),
                MetricPoint(
                    name=system.MEMORY_PERCENT,
                    timestamp=moment,
                    value=70.0,
                    labels={"host": host},
                ),
            ]
    points += [
        MetricPoint(name="queue.depth", timestamp=NOW - timedelta(minutes=1), value=5.0),
        MetricPoint(
            name=system.CPU_PERCENT,
            timestamp=NOW - timedelta(hours=3),
            value=99.0,
            labels={"host": "web-1"},
        ),
    ]
    MetricPoint.objects.bulk_create(points)

    hour = dashboards.system_page(parse_window({}, NOW))
    day = dashboards.system_page(parse_window({"window": "24h"}, NOW))

    cpu = charts_by_canvas(hour["charts"])["system-cpu"]
    assert [d["label"] for d in cpu["datasets"]] == ["web-1", "web-2"]
    web1 = [v for v in values(cpu) if v is not None]
    assert len(web1) == 60 and set(web1) == {10.0, 11.0}
    assert set(values(charts_by_canvas(hour["charts"])["system-memory"], 1)) <= {70.0, None}
    assert [row["host"] for row in hour["hosts"]] == ["web-1", "web-2"]
    assert hour["hosts"][0]["cpu_peak"] == 11.0
    day_cpu = charts_by_canvas(day["charts"])["system-cpu"]
    assert day_cpu["points"] in (288, 289)
    five_minutes = [v for v in values(day_cpu) if v is not None]
    assert 99.0 in five_minutes  # the point three hours ago, alone in its step
    assert all(10.0 <= v <= 11.0 for v in five_minutes if v != 99.0)
    assert day["hosts"][0]["cpu_peak"] == 99.0


def test_wilson_intervals_of_the_results_charts() -> None:
    low, high = result_charts.wilson_interval(5, 10) or (0, 0)
    assert low == pytest.approx(0.2366, abs=1e-4)
    assert high == pytest.approx(0.7634, abs=1e-4)
    assert result_charts.wilson_interval(0, 0) is None
    document = {
        "variants": [
            {"name": "control", "runs": 100, "success_rate": 0.9, "error_rate": 0.1},
            {"name": "treatment", "runs": 0, "success_rate": None, "error_rate": None},
        ],
        "comparisons": [],
    }
    success, _ = result_charts.charts(document)
    assert success["labels"] == ["control", "treatment"]
    assert success["estimates"] == [90.0, None]
    assert success["intervals"][1] is None
    low, high = success["intervals"][0]
    assert low < 90 < high and high - low < 15


# --- pages ---------------------------------------------------------------------------------------


def test_the_overview_page_draws_a_chart_per_graph_and_figure(
    admin_client_: Client, traffic: dict[str, Any]
) -> None:
    alert("support-bot", fired_at=timezone.now())

    response = admin_client_.get(OVERVIEW)

    assert response.status_code == 200
    content = response.content.decode()
    charts = chart_data(content)["charts"]
    assert len(charts) == 6
    for chart in charts:
        assert f'id="{chart["canvas"]}" data-points="{chart["points"]}"' in content
    assert "lgmon/vendor/chart.umd.js" in content and "lgmon/dashboards.js" in content
    assert graph_url("support-bot") in content
    assert 'id="open-alerts"' in content and 'id="running-experiments"' in content
    assert "support-bot errors" in content
    assert not re.search(r'(?:src|href)="(?:https?:)?//', content)  # nothing from elsewhere


def test_the_graph_page_and_its_windows(admin_client_: Client, traffic: dict[str, Any]) -> None:
    for query in ({}, {"window": "24h"}, {"window": "7d"}, {"node": "classify"}):
        response = admin_client_.get(graph_url("support-bot", **query))
        assert response.status_code == 200, query
        content = response.content.decode()
        assert 'id="node-table"' in content
        assert {c["canvas"] for c in chart_data(content)["charts"]} >= {"graph-throughput"}
    start = (timezone.now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = admin_client_.get(graph_url("support-bot", start=start))
    assert response.status_code == 200
    assert response.context["data"]["window"]["key"] == "custom"
    assert admin_client_.get(graph_url("nope")).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        {"window": "forever"},
        {"start": "not-a-date"},
        {"start": "2026-03-02T00:00", "end": "2026-03-01T00:00"},
    ],
)
def test_a_bad_window_is_a_message_not_an_error(
    admin_client_: Client, traffic: dict[str, Any], query: dict[str, str]
) -> None:
    for url in (
        graph_url("support-bot", **query),
        SYSTEM + "?" + "&".join(f"{k}={v}" for k, v in query.items()),
    ):
        response = admin_client_.get(url)
        assert response.status_code == 200
        content = response.content.decode()
        assert 'class="error"' in content and "Showing the last hour instead." in content
        assert response.context["window"].key == "1h"


def test_the_system_page(admin_client_: Client) -> None:
    MetricPoint.objects.create(
        name=system.CPU_PERCENT,
        timestamp=timezone.now() - timedelta(minutes=2),
        value=42.0,
        labels={"host": "web-1"},
    )

    response = admin_client_.get(SYSTEM, {"window": "24h"})

    assert response.status_code == 200
    content = response.content.decode()
    charts = charts_by_canvas(chart_data(content)["charts"])
    assert set(charts) == {"system-cpu", "system-memory"}
    assert 42.0 in values(charts["system-cpu"])
    assert charts["system-memory"]["datasets"] == []
    assert "web-1" in content


def test_dashboards_are_for_staff_only(client: Client, django_user_model: Any) -> None:
    for url in (OVERVIEW, graph_url("support-bot"), SYSTEM):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    user = django_user_model.objects.create_user("bob", password="pw")  # not staff
    client.force_login(user)
    for url in (OVERVIEW, SYSTEM):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_dashboards_need_the_view_permissions(
    client: Client, django_user_model: Any, traffic: dict[str, Any]
) -> None:
    alert("support-bot", fired_at=timezone.now())
    user = django_user_model.objects.create_user("carol", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(OVERVIEW).status_code == 403
    assert client.get(graph_url("support-bot")).status_code == 403
    assert client.get(SYSTEM).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="view_graph"))
    client.force_login(django_user_model.objects.get(id=user.id))
    response = client.get(OVERVIEW)
    assert response.status_code == 200
    content = response.content.decode()
    assert 'id="open-alerts"' not in content and 'id="running-experiments"' not in content
    assert reverse("dashboards:system") not in content
    assert client.get(graph_url("support-bot")).status_code == 200
    assert client.get(SYSTEM).status_code == 403

    user.user_permissions.add(
        Permission.objects.get(codename="view_alert"),
        Permission.objects.get(codename="view_metricpoint"),
    )
    client.force_login(django_user_model.objects.get(id=user.id))
    assert 'id="open-alerts"' in client.get(OVERVIEW).content.decode()
    assert client.get(SYSTEM).status_code == 200


def test_the_viewer_role_sees_every_dashboard(
    client: Client, django_user_model: Any, traffic: dict[str, Any]
) -> None:
    from django.contrib.auth.models import Group

    from monitoring.roles import VIEWER

    user = django_user_model.objects.create_user("dora", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWER))
    client.force_login(user)
    for url in (OVERVIEW, graph_url("support-bot"), SYSTEM):
        assert client.get(url).status_code == 200, url
    content = client.get(OVERVIEW).content.decode()
    assert 'id="open-alerts"' in content and 'id="running-experiments"' in content
    assert 'id="dashboards-module"' in client.get(reverse("admin:index")).content.decode()


def test_the_admin_links_to_the_dashboards(admin_client_: Client, traffic: dict[str, Any]) -> None:
    home = admin_client_.get(reverse("admin:index")).content.decode()
    assert 'id="dashboards-module"' in home
    assert OVERVIEW in home and SYSTEM in home and graph_url("support-bot") in home
    assert "Versioning" in home  # the admin's own app list is still there

    graphs = admin_client_.get(reverse("admin:versioning_graph_changelist")).content.decode()
    assert f'href="{graph_url("research")}"' in graphs


def test_the_experiment_results_page_draws_its_intervals(admin_client_: Client) -> None:
    v1 = services.register("bot", definition("a")).version
    v2 = services.register("bot", definition("a", "b")).version
    experiment = Experiment.objects.create(graph=v1.graph, key="adds-b", min_units=5)
    Variant.objects.create(experiment=experiment, position=0, name="control", version=v1)
    Variant.objects.create(experiment=experiment, position=1, name="treatment", version=v2)

    experiments.start(experiment, now=timezone.now() - timedelta(hours=1))

    runs = [
        graph_run(
            "bot",
            status="error" if (variant == "treatment" and user < 4) else "success",
            started_at=timezone.now() - timedelta(minutes=10),
            duration_ms=100.0 + user,
            user_id=f"{variant}-{user}",
            experiment=f"adds-b:{variant}",
        )
        for variant in ("control", "treatment")
        for user in range(10)
    ]
    ingest.ingest({"graph_runs": runs}, timezone.now())

    response = admin_client_.get(
        reverse("admin:versioning_experiment_results", args=[experiment.pk])
    )

    assert response.status_code == 200
    content = response.content.decode()
    charts = charts_by_canvas(chart_data(content)["charts"])
    assert set(charts) == {"results-success-rate", "results-error-rate", "results-lift"}
    errors = charts["results-error-rate"]
    assert errors["estimates"] == [0.0, 40.0]
    assert errors["intervals"][0][0] == 0.0 and 0 < errors["intervals"][0][1] < 40
    assert errors["intervals"][1][0] < 40 < errors["intervals"][1][1]
    assert len(charts["results-lift"]["labels"]) == 4
    assert 'id="results-error-rate" data-points="2"' in content
