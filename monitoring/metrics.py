"""``GET /metrics``: lgmon's figures in the Prometheus text exposition format.

A fresh ``CollectorRegistry`` per request holds one ``LgmonCollector``, which reads everything
from the rollups and a few small tables: about six queries whatever the number of raw runs.

What the series mean:

- ``lgmon_graph_runs_total``, ``lgmon_node_runs_total`` and the ``lgmon_*_run_duration_ms``
  histograms count the runs started since 00:00 UTC today, read from today's hour rollups
  (at most 24 rows per series). They reset to zero at midnight UTC, which ``rate()`` and
  ``increase()`` treat as a counter reset. Counting over everything kept instead would make
  the counters drop whenever retention prunes an old hour, and Prometheus would read each
  drop as a reset followed by a jump of the whole total. Runs that arrive after midnight with
  a start time before it are not counted. Every status of every known graph is exported, so
  a graph's first error of the day shows up as an increase from 0.
- Histogram buckets have fixed bounds (``BUCKETS_MS``). ``_sum`` and ``_count`` are exact;
  each bucket count comes from the stored log histograms: a bound's bucket also holds the
  durations of the sketch bucket it falls in, so a duration up to ~2% (one sketch bucket,
  ``histogram.GAMMA``) above a bound may be counted in it.
- ``lgmon_window_*`` gauges describe the last ``LGMON_METRICS_WINDOW_S`` seconds (the start
  is rounded down to its minute), the way the stats API does.
- ``lgmon_alerts_open`` counts pending and firing alerts for every severity and state (0 when
  there are none); ``lgmon_system_*`` gauges give each host's latest sample from the last
  ``SYSTEM_SAMPLE_MAX_AGE``.

Access: anyone when ``LGMON_METRICS_PUBLIC`` is true; otherwise ``Authorization: Bearer``
with ``LGMON_METRICS_TOKEN`` or an API key holding the read scope, or a signed-in staff user
whose role may read (``monitoring.roles``).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from versioning.models import Experiment, Graph, GraphVersion

from . import histogram, rollups, system
from .models import Alert, ApiKey, HourRollup, MetricPoint, RunStatus, Scope, Severity
from .roles import READ_PERMISSION

BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))
OPEN_STATES = (Alert.State.PENDING, Alert.State.FIRING)
SYSTEM_SAMPLE_MAX_AGE = timedelta(minutes=10)
SYSTEM_GAUGES = (
    (system.CPU_PERCENT, "lgmon_system_cpu_percent", "Host CPU use (%), latest sample."),
    (system.MEMORY_PERCENT, "lgmon_system_memory_percent", "Host memory use (%), latest sample."),
)


@dataclass(slots=True)
class _Durations:
    """Runs of one graph (or graph × node) since midnight: counts per status and latency."""

    by_status: dict[str, int] = field(default_factory=dict)
    count: int = 0
    total_ms: float = 0.0
    low_ms: float = float("inf")
    high_ms: float = float("-inf")
    parts: list[histogram.Histogram] = field(default_factory=list)

    def add(
        self, status: str, count: int, total: float, low: float, high: float, blob: Any
    ) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + count
        self.count += count
        self.total_ms += total
        self.low_ms = min(self.low_ms, low)
        self.high_ms = max(self.high_ms, high)
        self.parts.append(histogram.Histogram.from_bytes(blob))

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs for ``BUCKETS_MS`` and ``+Inf``.

        A bound at or past the slowest run holds every run, one below the fastest none; in
        between, the runs of every sketch bucket up to the bound's own.
        """
        merged = histogram.merge(self.parts)
        cumulative = np.cumsum(merged.counts)
        pairs: list[tuple[str, float]] = []
        for bound in BUCKETS_MS:
            if self.count == 0 or bound < self.low_ms:
                below = 0
            elif bound >= self.high_ms:
                below = self.count
            else:
                position = histogram.bucket_index(bound) - merged.offset
                if position < 0 or not cumulative.size:
                    below = 0
                else:
                    below = int(cumulative[min(position, cumulative.size - 1)])
            pairs.append((str(float(bound)), min(below, self.count)))  # "5.0", as the client
        pairs.append(("+Inf", self.count))
        return pairs


class LgmonCollector(Collector):
    """Reads the figures when collected; one instance per scrape."""

    def __init__(self, now: datetime, window: timedelta) -> None:
        self.now = now
        self.window = window

    def collect(self) -> Iterable[Metric]:
        graphs = dict(
            Graph.objects.annotate(
                active=Subquery(
                    GraphVersion.objects.filter(graph_id=OuterRef("pk"), is_active=True).values(
                        "number"
                    )[:1]
                )
            )
            .order_by()
            .values_list("name", "active")
        )
        yield from self._runs(sorted(graphs))
        yield from self._window()
        yield self._alerts()
        active = GaugeMetricFamily(
            "lgmon_graph_active_version",
            "Number of the graph's active version.",
            labels=["graph"],
        )
        for name, number in sorted(graphs.items()):
            if number is not None:
                active.add_metric([name], number)
        yield active
        yield GaugeMetricFamily(
            "lgmon_experiments_running",
            "Experiments running now.",
            value=Experiment.objects.filter(status=Experiment.Status.RUNNING).count(),
        )
        yield from self._system()

    def _runs(self, graph_names: Sequence[str]) -> Iterator[Metric]:
        midnight = self.now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        graphs: dict[str, _Durations] = {name: _Durations() for name in graph_names}
        nodes: dict[tuple[str, str], _Durations] = {}
        rows = (
            HourRollup.objects.filter(bucket_start__gte=midnight)
            .order_by()
            .values_list("graph__name", "node", *rollups.ROW_FIELDS)
        )
        for graph_name, node, *figures in rows:
            if node:
                group = nodes.get((graph_name, node))
                if group is None:
                    group = nodes[(graph_name, node)] = _Durations()
            else:
                group = graphs.setdefault(graph_name, _Durations())
            group.add(*figures)

        since = "since 00:00 UTC (reset daily)"
        graph_runs = CounterMetricFamily(
            "lgmon_graph_runs", f"Graph runs started {since}.", labels=["graph", "status"]
        )
        graph_hist = HistogramMetricFamily(
            "lgmon_graph_run_duration_ms",
            f"Duration of graph runs started {since}, in ms.",
            labels=["graph"],
        )
        for name, group in sorted(graphs.items()):
            for run_status in RunStatus.values:
                graph_runs.add_metric([name, run_status], group.by_status.get(run_status, 0))
            graph_hist.add_metric([name], group.buckets(), group.total_ms)
        node_runs = CounterMetricFamily(
            "lgmon_node_runs", f"Node runs started {since}.", labels=["graph", "node", "status"]
        )
        node_hist = HistogramMetricFamily(
            "lgmon_node_run_duration_ms",
            f"Duration of node runs started {since}, in ms.",
            labels=["graph", "node"],
        )
        for (name, node), group in sorted(nodes.items()):
            for run_status in RunStatus.values:
                node_runs.add_metric([name, node, run_status], group.by_status.get(run_status, 0))
            node_hist.add_metric([name, node], group.buckets(), group.total_ms)
        yield from (graph_runs, node_runs, graph_hist, node_hist)

    def _window(self) -> Iterator[Metric]:
        seconds = int(self.window.total_seconds())
        over = f"over the last {seconds} s"
        runs = GaugeMetricFamily("lgmon_window_runs", f"Graph runs {over}.", labels=["graph"])
        error_rate = GaugeMetricFamily(
            "lgmon_window_error_rate",
            f"Share of graph runs that failed {over} (0-1); absent without runs.",
            labels=["graph"],
        )
        latency = GaugeMetricFamily(
            "lgmon_window_latency_ms",
            f"Graph run duration quantiles {over}, in ms; absent without runs.",
            labels=["graph", "quantile"],
        )
        stats = rollups.grouped_window_stats(self.now - self.window, self.now, rollups.Scope())
        for entry in stats:
            graph_name = entry["graph"]
            runs.add_metric([graph_name], entry["runs"])
            if entry["error_rate"] is not None:
                error_rate.add_metric([graph_name], entry["error_rate"])
            for quantile, key in QUANTILES:
                value = entry["latency_ms"][key]
                if value is not None:
                    latency.add_metric([graph_name, quantile], value)
        yield from (runs, error_rate, latency)

    def _alerts(self) -> Metric:
        counts = {
            (severity, state): n
            for severity, state, n in Alert.objects.filter(state__in=OPEN_STATES)
            .order_by()
            .values_list("rule__severity", "state")
            .annotate(n=Count("id"))
        }
        family = GaugeMetricFamily(
            "lgmon_alerts_open",
            "Pending and firing alerts by their rule's severity.",
            labels=["severity", "state"],
        )
        for severity in Severity.values:
            for state in OPEN_STATES:
                family.add_metric([severity, state], counts.get((severity, state), 0))
        return family

    def _system(self) -> Iterator[Metric]:
        latest: dict[tuple[str, str], float] = {}
        points = (
            MetricPoint.objects.filter(
                name__in=[name for name, *_ in SYSTEM_GAUGES],
                timestamp__gte=self.now - SYSTEM_SAMPLE_MAX_AGE,
            )
            .order_by("timestamp", "id")
            .values_list("name", "labels", "value")
        )
        for name, labels, value in points:
            host = labels.get("host", "") if isinstance(labels, dict) else ""
            latest[(name, str(host))] = value  # later samples overwrite earlier ones
        for point_name, metric_name, documentation in SYSTEM_GAUGES:
            family = GaugeMetricFamily(metric_name, documentation, labels=["host"])
            for (name, host), value in sorted(latest.items()):
                if name == point_name:
                    family.add_metric([host], value)
            yield family


def window() -> timedelta:
    """The window of the ``lgmon_window_*`` gauges: at least a minute (their resolution)."""
    return timedelta(seconds=max(60.0, float(settings.LGMON_METRICS_WINDOW_S)))


def render(now: datetime | None = None) -> bytes:
    """The exposition text, from a registry of its own (never the process-wide default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LgmonCollector(now or timezone.now(), window()))
    return generate_latest(registry)


def _authorized(request: HttpRequest) -> bool:
    if settings.LGMON_METRICS_PUBLIC:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        expected: str = settings.LGMON_METRICS_TOKEN
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return True
        key = ApiKey.objects.for_raw_key(token)
        if key is None or not key.has_scope(Scope.READ):
            return False
        key.touch(timezone.now())
        return True
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_staff
        and user.has_perm(READ_PERMISSION)
    )


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` for Prometheus; 401 with ``WWW-Authenticate: Bearer`` when refused."""
    if not _authorized(request):
        response = HttpResponse(
            "Send 'Authorization: Bearer <token>': LGMON_METRICS_TOKEN or a read-scope API key.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="lgmon"'
        return response
    response = HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
