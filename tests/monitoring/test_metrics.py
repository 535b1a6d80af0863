from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from monitoring import histogram, system
from monitoring.metrics import _Durations
from monitoring.models import Alert, AlertRule, MetricPoint
from tests.conftest import graph_run, key_client
from versioning import services
from versioning.models import Experiment

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def traffic(post_batch: Any) -> None:
    """support-bot: 4 runs in the last 5 minutes (1 error), 2 more this morning (1 error),
    1 yesterday; billing: 1 interrupted run a minute ago."""
    runs = [
        graph_run(
            started_at=NOW - timedelta(minutes=minutes),
            status=status,
            duration_ms=duration,
            nodes=[("retrieve", "success", retrieve), ("answer", status, answer)],
        )
        for minutes, status, duration, retrieve, answer in [
            (1, "success", 20.0, 4.0, 15.0),
            (2, "error", 80.0, 6.0, 70.0),
            (3, "success", 120.0, 8.0, 110.0),
            (4, "success", 3000.0, 40.0, 2900.0),
        ]
    ]
    morning = NOW - timedelta(hours=3)
    runs.append(graph_run(started_at=morning, duration_ms=400.0))
    runs.append(graph_run(started_at=morning, status="error", duration_ms=7000.0))
    runs.append(graph_run(started_at=NOW - timedelta(days=1), duration_ms=50.0))
    runs.append(
        graph_run(
            "billing", status="interrupted", started_at=NOW - timedelta(minutes=1), duration_ms=300
        )
    )
    assert post_batch(runs).status_code == 200


def scrape(client: Client | APIClient) -> tuple[Any, Samples, dict[str, str]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return response, samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {key: found for (n, key), found in samples.items() if n == name and wanted <= key}


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    found = series(samples, f"{name}_bucket", **labels)
    return sorted((float(dict(key)["le"]), count) for key, count in found.items())


def test_it_counts_graph_and_node_runs_since_midnight(
    reader_client: APIClient, traffic: None
) -> None:
    _, samples, types = scrape(reader_client)

    assert types["lgmon_graph_runs"] == "counter"
    runs = "lgmon_graph_runs_total"
    assert value(samples, runs, graph="support-bot", status="success") == 4  # not yesterday's
    assert value(samples, runs, graph="support-bot", status="error") == 2
    assert value(samples, runs, graph="support-bot", status="cancelled") == 0
    assert value(samples, runs, graph="billing", status="interrupted") == 1
    assert value(samples, runs, graph="billing", status="success") == 0
    nodes = "lgmon_node_runs_total"
    assert value(samples, nodes, graph="support-bot", node="retrieve", status="success") == 4
    assert value(samples, nodes, graph="support-bot", node="answer", status="success") == 3
    assert value(samples, nodes, graph="support-bot", node="answer", status="error") == 1
    assert not series(samples, nodes, graph="billing")


def test_histograms_have_cumulative_buckets_and_exact_sums(
    reader_client: APIClient, traffic: None
) -> None:
    _, samples, types = scrape(reader_client)

    assert types["lgmon_graph_run_duration_ms"] == "histogram"
    graph = buckets(samples, "lgmon_graph_run_duration_ms", graph="support-bot")
    counts = [count for _, count in graph]
    assert counts == sorted(counts)
    assert graph[-1] == (float("inf"), 6)
    assert value(samples, "lgmon_graph_run_duration_ms_count", graph="support-bot") == 6
    assert value(samples, "lgmon_graph_run_duration_ms_sum", graph="support-bot") == 10620.0
    # 20, 80, 120, 3000 ms in the window; 400 and 7000 ms this morning.
    by_bound = dict(graph)
    bounds = (10, 25, 100, 250, 500, 2500, 5000, 10000)
    assert [by_bound[b] for b in bounds] == [0, 1, 2, 3, 4, 4, 5, 6]

    retrieve = dict(buckets(samples, "lgmon_node_run_duration_ms", node="retrieve"))
    assert [retrieve[b] for b in (5, 10, 25, 50, float("inf"))] == [1, 3, 3, 4, 4]
    answer_sum = value(
        samples, "lgmon_node_run_duration_ms_sum", graph="support-bot", node="answer"
    )
    assert answer_sum == 15.0 + 70.0 + 110.0 + 2900.0
    billing = buckets(samples, "lgmon_graph_run_duration_ms", graph="billing")
    assert [count for bound, count in billing if bound >= 250] == [0, 1, 1, 1, 1, 1, 1, 1, 1]


def test_window_gauges_cover_the_last_minutes(reader_client: APIClient, traffic: None) -> None:
    _, samples, _ = scrape(reader_client)

    assert value(samples, "lgmon_window_runs", graph="support-bot") == 4
    assert value(samples, "lgmon_window_error_rate", graph="support-bot") == 0.25
    assert value(samples, "lgmon_window_error_rate", graph="billing") == 0.0
    latency = "lgmon_window_latency_ms"
    assert value(samples, latency, graph="support-bot", quantile="0.5") == pytest.approx(
        80.0, rel=0.02
    )
    # The rank of p99 among 4 runs is 0.99 * 3 = 2.97: the third run (numpy's "lower").
    assert value(samples, latency, graph="support-bot", quantile="0.99") == pytest.approx(
        120.0, rel=0.02
    )
    assert value(samples, latency, graph="billing", quantile="0.95") == 300.0


def test_the_window_is_a_setting(reader_client: APIClient, traffic: None, settings: Any) -> None:
    settings.LGMON_METRICS_WINDOW_S = 4 * 3600
    _, samples, _ = scrape(reader_client)
    assert value(samples, "lgmon_window_runs", graph="support-bot") == 6
    assert value(samples, "lgmon_window_error_rate", graph="support-bot") == pytest.approx(1 / 3)


def test_a_graph_without_runs_today_still_has_its_series(reader_client: APIClient) -> None:
    services.register("quiet", {"name": "quiet", "nodes": []})
    _, samples, _ = scrape(reader_client)

    assert value(samples, "lgmon_graph_runs_total", graph="quiet", status="error") == 0
    assert value(samples, "lgmon_graph_run_duration_ms_count", graph="quiet") == 0
    assert value(samples, "lgmon_graph_active_version", graph="quiet") == 1
    assert not series(samples, "lgmon_window_error_rate", graph="quiet")


def make_alert(rule: AlertRule, state: str, n: int) -> Alert:
    fingerprint = hashlib.sha256(f"{rule.id}-{n}".encode()).hexdigest()
    return Alert.objects.create(rule=rule, fingerprint=fingerprint, labels={"n": n}, state=state)


def test_it_counts_open_alerts_by_severity(reader_client: APIClient) -> None:
    high = AlertRule.objects.create(
        name="Errors", metric="error_rate", threshold=0.1, severity="high"
    )
    low = AlertRule.objects.create(name="Slow", metric="latency_p95", threshold=500, severity="low")
    for n, state in enumerate(["firing", "firing", "pending", "inactive"]):
        make_alert(high, state, n)
    make_alert(low, "pending", 9)

    _, samples, types = scrape(reader_client)

    assert types["lgmon_alerts_open"] == "gauge"
    assert series(samples, "lgmon_alerts_open") == {
        frozenset({("severity", severity), ("state", state)}): count
        for severity, state, count in [
            ("low", "pending", 1),
            ("low", "firing", 0),
            ("medium", "pending", 0),
            ("medium", "firing", 0),
            ("high", "pending", 1),
            ("high", "firing", 2),
            ("critical", "pending", 0),
            ("critical", "firing", 0),
        ]
    }


def test_it_reports_active_versions_and_running_experiments(reader_client: APIClient) -> None:
    definition = {"name": "support-bot", "nodes": ["retrieve"]}
    first = services.register("support-bot", definition).version
    second = services.register("support-bot", {**definition, "nodes": ["answer"]}).version
    services.activate(second, actor="test")
    Experiment.objects.create(graph=first.graph, key="draft-only")
    Experiment.objects.create(graph=first.graph, key="live", status="running")

    _, samples, _ = scrape(reader_client)

    assert value(samples, "lgmon_graph_active_version", graph="support-bot") == 2
    assert value(samples, "lgmon_experiments_running") == 1


def test_it_reports_the_latest_system_sample_per_host(reader_client: APIClient) -> None:
    def point(name: str, host: str, ago: timedelta, sampled: float) -> MetricPoint:
        return MetricPoint(name=name, timestamp=NOW - ago, value=sampled, labels={"host": host})

    MetricPoint.objects.bulk_create(
        [
            point(system.CPU_PERCENT, "web-1", timedelta(seconds=30), 42.0),
            point(system.CPU_PERCENT, "web-1", timedelta(seconds=60), 10.0),
            point(system.CPU_PERCENT, "web-2", timedelta(seconds=40), 7.5),
            point(system.MEMORY_PERCENT, "web-1", timedelta(seconds=30), 63.0),
            point(system.CPU_PERCENT, "gone", timedelta(hours=2), 99.0),  # stale: left out
            point(system.PROCESS_CPU_PERCENT, "web-1", timedelta(seconds=30), 5.0),
        ]
    )

    _, samples, _ = scrape(reader_client)

    assert series(samples, "lgmon_system_cpu_percent") == {
        frozenset({("host", "web-1")}): 42.0,
        frozenset({("host", "web-2")}): 7.5,
    }
    assert series(samples, "lgmon_system_memory_percent") == {frozenset({("host", "web-1")}): 63.0}


def test_it_costs_a_handful_of_queries(
    reader_client: APIClient, traffic: None, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(9):
        scrape(reader_client)


def test_buckets_clamp_to_the_exact_extremes_and_survive_empty_sketches() -> None:
    durations = _Durations()
    durations.add(
        "success", 3, 60.0, 12.0, 30.0, histogram.Histogram.of([12.0, 18.0, 30.0]).to_bytes()
    )
    assert dict(durations.buckets())["25.0"] == 2
    assert dict(durations.buckets())["10.0"] == 0
    legacy = _Durations()
    legacy.add("success", 2, 60.0, 20.0, 40.0, b"")  # a row without its histogram
    assert [count for _, count in legacy.buckets()][:5] == [0, 0, 0, 2, 2]  # 5 .. 50 ms


# --- access ------------------------------------------------------------------------------


def test_it_refuses_requests_without_credentials(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer lgm_nope_nope")
    assert wrong.status_code == 401


def test_an_ingest_only_key_is_refused(app_client: APIClient) -> None:
    assert app_client.get("/metrics").status_code == 401


def test_the_metrics_token_is_accepted(client: Client, settings: Any) -> None:
    settings.LGMON_METRICS_TOKEN = "s3cret-scrape-token"
    scrape(Client(HTTP_AUTHORIZATION="Bearer s3cret-scrape-token"))
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-tokeN")
    assert refused.status_code == 401


def test_an_empty_token_setting_accepts_no_empty_token(client: Client, settings: Any) -> None:
    settings.LGMON_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_public_metrics_need_no_credentials(client: Client, settings: Any) -> None:
    settings.LGMON_METRICS_PUBLIC = True
    _, samples, _ = scrape(client)
    assert value(samples, "lgmon_experiments_running") == 0


def test_a_read_key_and_a_staff_user_are_accepted(client: Client, admin_user: Any) -> None:
    scrape(key_client("read", "manage"))
    client.force_login(admin_user)
    scrape(client)
    assert client.post("/metrics").status_code == 405


def test_the_process_wide_registry_is_untouched(reader_client: APIClient) -> None:
    from prometheus_client import REGISTRY

    before = set(REGISTRY._names_to_collectors)
    scrape(reader_client)
    scrape(reader_client)
    assert set(REGISTRY._names_to_collectors) == before
