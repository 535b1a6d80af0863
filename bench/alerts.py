"""Alerting benchmark: one evaluation tick of 100 rules at 1M and at 10M stored runs.

On a dedicated PostgreSQL database (``lgmon_bench_alerts``, recreated), it loads the same
synthetic workload as ``bench/query.py`` (14 days of sessions over 10 graphs x 5 nodes, through
``ingest.store`` and ``rollups.apply_pending``; see that module's docstring), plus 14 days of
system and custom metric points (3 hosts, one point per metric every 30 s), then times
``alerting.evaluate_tick`` (claim the tick, measure every rule, step every alert, write states
and outbox rows in one transaction per rule) with "now" at the end of the data.

The 100 rules are what a team with 10 graphs might keep:
- per graph: error rate over 10 min, p95 over 15 min, p99 over 1 h, run count over 5 min
  (40 rules); each node's average latency, one alert per node (10);
- two nodes per graph at p95 over 30 min (20); error rate per graph ("each graph") over
  5 min to 24 h (10); all runs over 5 min to 24 h, error rate and p95 (12);
- system CPU and memory over 5 and 15 min (4); two custom metrics over 10 and 30 min (4).
Thresholds are set so that some alerts fire, and a webhook channel gets their outbox rows.

Each size: a warm-up tick, then ``BENCH_TICKS`` (default 10) ticks 30 s apart; median, p95 and
max, with the distinct rollup reads a tick made. Target: under 1 s per tick, and under 2x
that at 10M (evaluation reads rollups, so it must not grow with raw data). The last line is
``alert_tick_s=<median seconds at the largest size>``.

    .venv/bin/python bench/alerts.py
    BENCH_RUNS=100000,300000 .venv/bin/python bench/alerts.py   # quick, smaller sizes
    BENCH_PROFILE=1 ...                                          # + a cProfile of one tick

It is a benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import query as workload  # the shared synthetic workload

workload.DB_NAME = "lgmon_bench_alerts"
TICKS = int(os.environ.get("BENCH_TICKS", "10"))
HOSTS = ("web-1", "web-2", "worker-1")
POINT_STEP = timedelta(seconds=30)
TARGET_S = 1.0


def create_rules() -> None:
    from monitoring.models import AlertRule, NotificationChannel

    AlertRule.objects.all().delete()
    rules: list[AlertRule] = []
    minutes = timedelta(minutes=1)
    for index, graph in enumerate(workload.GRAPHS):
        rules += [
            AlertRule(
                name=f"{graph} error rate",
                metric="error_rate",
                scope="graph",
                graph=graph,
                threshold=0.05 + 0.005 * index,
                window=10 * minutes,
                min_samples=10,
            ),
            AlertRule(
                name=f"{graph} p95",
                metric="latency_p95",
                scope="graph",
                graph=graph,
                threshold=4000,
                window=15 * minutes,
            ),
            AlertRule(
                name=f"{graph} p99",
                metric="latency_p99",
                scope="graph",
                graph=graph,
                threshold=8000,
                window=60 * minutes,
            ),
            AlertRule(
                name=f"{graph} silent",
                metric="run_count",
                scope="graph",
                graph=graph,
                comparison="lt",
                threshold=1,
                window=5 * minutes,
            ),
            AlertRule(
                name=f"{graph} slow nodes",
                metric="latency_avg",
                scope="each_node",
                graph=graph,
                threshold=1500,
                window=15 * minutes,
            ),
        ]
        for node in workload.NODES[1:3]:
            rules.append(
                AlertRule(
                    name=f"{graph}/{node} p95",
                    metric="latency_p95",
                    scope="node",
                    graph=graph,
                    node=node,
                    threshold=3000,
                    window=30 * minutes,
                )
            )
    windows = [5, 10, 15, 30, 60, 180, 360, 720, 1440, 2880]
    for window in windows:
        rules.append(
            AlertRule(
                name=f"each graph error rate {window}m",
                metric="error_rate",
                scope="each_graph",
                threshold=0.06,
                window=window * minutes,
                min_samples=20,
            )
        )
    for window in windows[:6]:
        for metric, threshold in (("error_rate", 0.08), ("latency_p95", 5000.0)):
            rules.append(
                AlertRule(
                    name=f"all {metric} {window}m",
                    metric=metric,
                    threshold=threshold,
                    window=window * minutes,
                )
            )
    for metric, window in (("system_cpu", 5), ("system_cpu", 15), ("system_memory", 5)):
        rules.append(
            AlertRule(
                name=f"{metric} {window}m", metric=metric, threshold=80, window=window * minutes
            )
        )
    rules.append(
        AlertRule(
            name="system_memory 15m", metric="system_memory", threshold=60, window=15 * minutes
        )
    )
    for name, window in (("queue.depth", 10), ("queue.depth", 30), ("cache.hit_ratio", 10)):
        rules.append(
            AlertRule(
                name=f"{name} {window}m",
                metric="custom",
                custom_metric=name,
                threshold=100 if name == "queue.depth" else 0.5,
                comparison="gt" if name == "queue.depth" else "lt",
                window=window * minutes,
            )
        )
    rules.append(
        AlertRule(
            name="tokens 30m",
            metric="custom",
            custom_metric="llm.tokens",
            threshold=1e6,
            window=30 * minutes,
        )
    )
    assert len(rules) == 100, len(rules)
    for rule in rules:
        rule.full_clean()
    AlertRule.objects.bulk_create(rules)
    NotificationChannel.objects.get_or_create(
        name="bench hook", kind="webhook", defaults={"config": {"url": "http://192.0.2.1/"}}
    )


def load_points(end: datetime, rng: np.random.Generator) -> int:
    """14 days of system and custom metric points, one per metric and host every 30 s."""
    from django.db import connection

    steps = int(workload.RETENTION / POINT_STEP)
    stamps = [end - POINT_STEP * (i + 1) for i in range(steps)]
    names = ("system.cpu_percent", "system.memory_percent", "queue.depth", "cache.hit_ratio")
    rows = 0
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY monitoring_metricpoint (name, timestamp, value, labels) FROM STDIN"
        ) as copy,
    ):
        for host in HOSTS:
            label = f'{{"host": "{host}"}}'
            for name in names:
                values = (
                    rng.uniform(20, 95, steps) if "percent" in name else rng.uniform(0, 200, steps)
                )
                if name == "cache.hit_ratio":
                    values = rng.uniform(0.3, 1.0, steps)
                for stamp, value in zip(stamps, values.tolist(), strict=True):
                    copy.write_row((name, stamp, value, label))
                rows += steps
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE monitoring_metricpoint")
    return rows


def time_ticks(end: datetime) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitoring import alerting
    from monitoring.models import Alert, AlertTick, Notification

    AlertTick.objects.all().delete()
    interval = timedelta(seconds=30)
    first = alerting.tick_time(end, interval) - interval * (TICKS + 1)
    warm = alerting.evaluate_tick(first)
    assert warm is not None
    timings: list[float] = []
    queries = 0
    report = warm
    for k in range(1, TICKS + 1):
        moment = first + interval * k
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            found = alerting.evaluate_tick(moment)
            timings.append(time.perf_counter() - t0)
        assert found is not None
        report, queries = found, len(captured.captured_queries)
    if os.environ.get("BENCH_PROFILE") == "1":
        import cProfile
        import pstats

        AlertTick.objects.filter(tick_at__gte=first + interval).delete()
        with cProfile.Profile() as profile:
            alerting.evaluate_tick(first + interval)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    ordered = sorted(timings)
    return {
        "median": statistics.median(timings),
        "p95": ordered[max(0, int(0.95 * len(ordered) + 0.5) - 1)],
        "max": ordered[-1],
        "warm": warm,
        "report": report,
        "queries": queries,
        "firing": Alert.objects.filter(state="firing").count(),
        "alerts": Alert.objects.count(),
        "outbox": Notification.objects.count(),
    }


def main() -> None:
    sizes = workload.sizes_from_env()
    began = time.perf_counter()
    print(
        f"alerts benchmark: 100 rules, sizes {', '.join(workload.label(s) for s in sizes)} runs;"
        f" {workload.load_average()}"
    )
    workload.recreate_database()
    workload.setup_django()
    from monitoring.rollups import floor_hour

    end = floor_hour(datetime.now(UTC)) - timedelta(hours=1) + timedelta(minutes=37, seconds=20)
    rng = np.random.default_rng(workload.SEED)
    shape = workload.Shape.make(rng, end)
    loaded = workload.Loaded()
    t0 = time.perf_counter()
    points = load_points(end, rng)
    print(f"loaded {points:,} metric points in {time.perf_counter() - t0:.1f} s")
    create_rules()
    results: list[tuple[int, dict[str, Any]]] = []
    try:
        for runs in sizes:
            print(f"\n=== loading up to {workload.label(runs)} runs ({workload.load_average()})")
            workload.load(runs, rng, shape, loaded)
            result = time_ticks(end)
            results.append((runs, result))
            report = result["report"]
            print(
                f"{workload.label(runs)} runs: tick median {result['median'] * 1000:.0f} ms,"
                f" p95 {result['p95'] * 1000:.0f} ms, max {result['max'] * 1000:.0f} ms over"
                f" {TICKS} ticks (warm-up {report.rules} rules; {result['queries']} SQL queries"
                f" per tick); {result['alerts']} alerts, {result['firing']} firing,"
                f" {result['outbox']} outbox rows; warm-up events {result['warm'].events}"
            )
    finally:
        from django.db import connection

        connection.close()
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"\nkeeping database {workload.DB_NAME} (BENCH_KEEP=1)")
        else:
            workload.drop_database()

    print(f"\n=== targets (total time {time.perf_counter() - began:.0f} s)")
    first_median = results[0][1]["median"]
    for runs, result in results:
        ok = result["median"] < TARGET_S
        print(
            f"[{workload.verdict(ok)}] a tick of 100 rules under {TARGET_S:.0f} s at"
            f" {workload.label(runs)} runs: median {result['median']:.3f} s"
        )
    last_runs, last = results[-1]
    if len(results) > 1:
        ratio = last["median"] / first_median
        print(
            f"[{workload.verdict(ratio < 2)}] under 2x from {workload.label(results[0][0])} to"
            f" {workload.label(last_runs)} runs: {ratio:.2f}x"
        )
    print(f"alert_tick_s={last['median']:.3f}")


if __name__ == "__main__":
    main()
