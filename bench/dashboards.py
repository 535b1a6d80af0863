"""Dashboard benchmark: the admin dashboards rendered with 1,000,000 runs stored.

On a dedicated PostgreSQL database (``lgmon_bench_dash``, recreated), it loads the synthetic
workload of ``bench/query.py`` (14 days of sessions over 10 graphs x 5 nodes, through
``ingest.store`` and ``rollups.apply_pending``; see that module's docstring) ending now, 14 days
of system and custom metric points (``bench/alerts.py``'s: 3 hosts, one point per metric every
30 s), and what the pages mark and list: two versions per graph with an activation 30 minutes
ago, firing and resolved alerts, a running experiment.

Then it times full page renders through Django's test ``Client`` (a signed-in superuser, the
whole middleware stack, templates, JSON for the charts), ``BENCH_REQUESTS`` (default 20) per
page after 2 warm-ups: the overview, the busiest graph's page at 1 h, 24 h and 7 d, the system
page at 1 h, 24 h and 7 d, and the admin home (with its dashboards box). Median, p95 and max
per page, with its SQL queries and response size. Target: p95 under 300 ms per page (the pages
read rollups, never raw runs). The last line is ``dashboard_p95_ms=<worst page's p95>``.

    .venv/bin/python bench/dashboards.py
    BENCH_RUNS=100000 .venv/bin/python bench/dashboards.py      # quick, smaller
    BENCH_KEEP=1 ...                                            # keep the database

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
from bench import alerts as alert_bench  # its metric points (importing it names its database)
from bench import query as workload  # the shared synthetic workload

workload.DB_NAME = "lgmon_bench_dash"
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "20"))
WARMUPS = 2
TARGET_MS = 300.0


def decorate(end: datetime) -> None:
    """Versions, activations, alerts and an experiment, for the markers and lists."""
    from monitoring.models import Alert, AlertRule
    from versioning import services
    from versioning.models import Experiment, Variant

    for index, graph in enumerate(workload.GRAPHS):
        nodes = [{"name": node} for node in workload.NODES]
        v1 = services.register(graph, {"nodes": nodes}, now=end - timedelta(days=3)).version
        v2 = services.register(
            graph, {"nodes": nodes, "v": 2}, now=end - timedelta(hours=2)
        ).version
        services.activate(v2, actor="bench", now=end - timedelta(minutes=30 + index))
        if index == 0:
            experiment = Experiment.objects.create(graph=v1.graph, key="bench-ab")
            for position, version in enumerate((v1, v2)):
                Variant.objects.create(
                    experiment=experiment,
                    position=position,
                    name=("control", "treatment")[position],
                    version=version,
                )
            Experiment.objects.filter(id=experiment.id).update(
                status="running", started_at=end - timedelta(days=1)
            )
    rule = AlertRule.objects.create(
        name="bench error rate", metric="error_rate", scope="each_graph", threshold=0.05
    )
    for index, graph in enumerate(workload.GRAPHS):
        labels = {"alertname": rule.name, "graph": graph}
        firing = index < 3
        Alert.objects.create(
            rule=rule,
            fingerprint=f"bench-{graph}",
            labels=labels,
            state="firing" if firing else "inactive",
            value=0.07,
            active_at=end - timedelta(minutes=20 + index),
            fired_at=end - timedelta(minutes=15 + index),
            resolved_at=None if firing else end - timedelta(minutes=5),
        )


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def pages() -> list[tuple[str, str]]:
    busiest = workload.GRAPHS[0]  # the largest share of the sessions
    graph = f"/admin/dashboards/graphs/{busiest}/"
    return [
        ("overview", "/admin/dashboards/"),
        ("graph 1h", graph),
        ("graph 24h", f"{graph}?window=24h"),
        ("graph 7d", f"{graph}?window=7d"),
        ("graph 7d node", f"{graph}?window=7d&node=call_model"),
        ("system 1h", "/admin/dashboards/system/"),
        ("system 24h", "/admin/dashboards/system/?window=24h"),
        ("system 7d", "/admin/dashboards/system/?window=7d"),
        ("admin home", "/admin/"),
    ]


def time_pages() -> dict[str, dict[str, Any]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    results: dict[str, dict[str, Any]] = {}
    for name, url in pages():
        for _ in range(WARMUPS):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        # Counted with a wrapper: the queries log is reset when a request starts.
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            response = client.get(url)
        size = len(response.content)
        timings = []
        for _ in range(REQUESTS):
            t0 = time.perf_counter()
            response = client.get(url)
            _ = response.content
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        ordered = sorted(timings)
        results[name] = {
            "url": url,
            "median": statistics.median(timings),
            "p95": workload.nearest_rank(ordered, 0.95),
            "max": ordered[-1],
            "queries": counter.count,
            "kb": size / 1024,
        }
        print(
            f"{name:<14} median {results[name]['median']:6.1f} ms  p95"
            f" {results[name]['p95']:6.1f} ms  max {results[name]['max']:6.1f} ms"
            f"  ({results[name]['queries']} SQL queries, {results[name]['kb']:.0f} kB)  {url}"
        )
    if os.environ.get("BENCH_PROFILE") == "1":
        import cProfile
        import pstats

        for name, url in pages()[:4]:
            print(f"\n--- profile of {name}")
            with cProfile.Profile() as profile:
                client.get(url)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
    return results


def main() -> None:
    os.environ.setdefault("BENCH_RUNS", "1000000")
    sizes = workload.sizes_from_env()
    began = time.perf_counter()
    print(
        f"dashboards benchmark: sizes {', '.join(workload.label(s) for s in sizes)} runs,"
        f" {REQUESTS} requests per page; {workload.load_average()}"
    )
    workload.recreate_database()
    workload.setup_django()

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    rng = np.random.default_rng(workload.SEED)
    shape = workload.Shape.make(rng, end)
    loaded = workload.Loaded()
    t0 = time.perf_counter()
    points = alert_bench.load_points(end, rng)
    print(f"loaded {points:,} metric points in {time.perf_counter() - t0:.1f} s")
    decorate(end)
    results: list[tuple[int, dict[str, dict[str, Any]]]] = []
    try:
        for runs in sizes:
            print(f"\n=== loading up to {workload.label(runs)} runs ({workload.load_average()})")
            workload.load(runs, rng, shape, loaded)
            print(f"\n=== rendering at {workload.label(runs)} runs ({workload.load_average()})")
            results.append((runs, time_pages()))
            from django.contrib.auth import get_user_model

            get_user_model().objects.filter(username="bench").delete()
    finally:
        from django.db import connection

        connection.close()
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"\nkeeping database {workload.DB_NAME} (BENCH_KEEP=1)")
        else:
            workload.drop_database()

    print(
        f"\n=== targets (total time {time.perf_counter() - began:.0f} s; {workload.load_average()})"
    )
    for runs, timings in results:
        for name, timing in timings.items():
            ok = timing["p95"] < TARGET_MS
            print(
                f"[{workload.verdict(ok)}] {name} under {TARGET_MS:.0f} ms at"
                f" {workload.label(runs)} runs: p95 {timing['p95']:.1f} ms"
                f" (median {timing['median']:.1f} ms)"
            )
    worst = max(timing["p95"] for timing in results[-1][1].values())
    print(f"dashboard_p95_ms={worst:.1f}")


if __name__ == "__main__":
    main()
