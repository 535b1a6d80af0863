"""The figures of the admin dashboards (overview, one graph, system), read from the rollups.

Pure data assembly: every run statistic comes from the minute and hour rollups
(``monitoring.rollups``), never from raw runs, so a page costs the same with a thousand or ten
million runs stored. System charts bin the sampled metric points in SQL, one row per step,
host and metric. The views (``analytics.views``) hand the result to the page as JSON, where
``static/lgmon/dashboards.js`` draws it with Chart.js.

Charts are described the same way everywhere (``chart``): a canvas id, a unit, datasets of
``[x, y]`` points (x in epoch milliseconds, y None for a step without data) and markers (times
to draw as vertical lines: version changes, alerts firing and resolving).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import Combinable
from django.db.models.fields.json import KT
from django.utils.dateparse import parse_datetime

from monitoring import histogram, rollups, system
from monitoring.models import (
    Alert,
    HourRollup,
    MetricPoint,
    MinuteRollup,
    RunRollup,
    RunStatus,
)
from monitoring.rollups import ONE_HOUR, ONE_MINUTE, Scope
from versioning.models import Experiment, Graph, GraphVersion, VersionEvent

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""Steps are aligned to multiples of their length from here, as ``rollups.series`` does."""

WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
DEFAULT_WINDOW = "1h"
MAX_CUSTOM_WINDOW = timedelta(days=31)
TOP_NODES = 5
"""Nodes with the highest p95 drawn together on the graph page's per-node chart."""
MAX_MARKERS = 200
MAX_OPEN_ALERTS = 50
SYSTEM_METRICS = {system.CPU_PERCENT: "cpu", system.MEMORY_PERCENT: "memory"}
MAX_HOSTS = 20


class WindowError(ValueError):
    """The window asked for cannot be shown; the message says why, for the page."""


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    key: str  # "1h", "24h", "7d" or "custom"

    @property
    def step(self) -> timedelta:
        """1 minute up to 3 hours, 5 minutes up to 2 days, an hour beyond."""
        span = self.end - self.start
        if span <= timedelta(hours=3):
            return ONE_MINUTE
        if span <= timedelta(days=2):
            return timedelta(minutes=5)
        return ONE_HOUR

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "step_s": int(self.step.total_seconds()),
        }


def _moment(raw: str, name: str) -> datetime:
    try:
        parsed = parse_datetime(raw.strip())
    except ValueError:  # well formed but out of range, e.g. month 13
        parsed = None
    if parsed is None:
        raise WindowError(f"{name} {raw!r} is not a date and time (YYYY-MM-DDTHH:MM, UTC).")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_window(params: Mapping[str, str], now: datetime) -> Window:
    """``window=1h|24h|7d`` ending now, or a custom ``start`` (and ``end``, default now) in
    ISO 8601 (UTC unless an offset is given). Raises ``WindowError`` for anything else."""
    raw_start, raw_end = params.get("start", ""), params.get("end", "")
    if raw_start or raw_end:
        if not raw_start:
            raise WindowError("A custom window needs a start.")
        start = _moment(raw_start, "Start")
        end = _moment(raw_end, "End") if raw_end else now
        if start >= end:
            raise WindowError("The start must be before the end.")
        if end - start > MAX_CUSTOM_WINDOW:
            raise WindowError(f"A custom window is at most {MAX_CUSTOM_WINDOW.days} days long.")
        return Window(start, end, "custom")
    key = params.get("window", "") or DEFAULT_WINDOW
    if key not in WINDOWS:
        raise WindowError(f"Unknown window {key!r}: choose {', '.join(WINDOWS)} or start/end.")
    return Window(now - WINDOWS[key], now, key)


# --- series from the rollups ---------------------------------------------------------------------


def _align(moment: datetime, step: timedelta) -> datetime:
    return moment - (moment - EPOCH) % step


def _slots(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    slots = []
    moment = _align(start, step)
    while moment < end:
        slots.append(moment)
        moment += step
    return slots


class _EpochBucket(Func):
    """A timestamp's step as epoch seconds (rounded down to a multiple of the step), in SQL."""

    output_field = IntegerField()

    def __init__(self, expression: Combinable | str, step_s: int) -> None:
        super().__init__(expression)
        self.step_s = int(step_s)

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        epoch = "FLOOR(EXTRACT(EPOCH FROM %(expressions)s))::bigint"
        template = f"(({epoch} / {self.step_s}) * {self.step_s})"
        return self.as_sql(compiler, connection, template=template, **extra_context)

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # %%%%s: the template's formatting and then the SQLite backend each halve the %.
        epoch = "CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)"
        template = f"(({epoch} / {self.step_s}) * {self.step_s})"
        return self.as_sql(compiler, connection, template=template, **extra_context)


QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


class _Series:
    """One graph's or node's figures per step, added up from rollup rows.

    What ``rollups.Stats`` gives per step, for every step at once: the stored histograms are
    decoded together into one steps × buckets matrix (``histogram.Histogram.to_bytes``: an
    int32 offset, then uint32 counts, little-endian), and the quantiles of every step come
    from its cumulative sums by ``histogram.quantiles``' method (the bucket holding rank
    ``q * (total - 1)``, clamped to the step's exact minimum and maximum).
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.runs = [0] * steps
        self.errors = [0] * steps
        self.low = [math.inf] * steps
        self.high = [-math.inf] * steps
        self._steps: list[int] = []
        self._blobs: list[bytes | memoryview] = []

    def add(self, step: int, row: Sequence[Any]) -> None:
        """Add a rollup row ``(status, count, sum, min, max, histogram bytes)`` to a step."""
        status, count, _, low, high, blob = row
        self.runs[step] += count
        if status == RunStatus.ERROR:
            self.errors[step] += count
        if low < self.low[step]:
            self.low[step] = low
        if high > self.high[step]:
            self.high[step] = high
        if len(blob) > 4:  # an offset and at least one count
            self._steps.append(step)
            self._blobs.append(blob)

    def _matrix(self) -> tuple[int, npt.NDArray[np.int64]]:
        if not self._blobs:
            return 0, np.zeros((self.steps, 0), dtype=np.int64)
        words = np.frombuffer(b"".join(self._blobs), dtype="<u4")
        sizes = np.fromiter((len(blob) // 4 for blob in self._blobs), dtype=np.int64)
        heads = np.cumsum(sizes) - sizes  # where each histogram's offset word is
        offsets = words.view("<i4")[heads].astype(np.int64)
        lengths = sizes - 1
        counts = np.delete(words, heads).astype(np.int64)
        part = np.repeat(np.arange(len(sizes)), lengths)
        position = np.arange(counts.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        buckets = offsets[part] + position
        lowest = int(offsets.min())
        width = int((offsets + lengths).max()) - lowest
        steps = np.asarray(self._steps, dtype=np.int64)[part]
        flat = np.bincount(
            steps * width + (buckets - lowest), weights=counts, minlength=self.steps * width
        )
        return lowest, flat.round().astype(np.int64).reshape(self.steps, width)

    def figures(self) -> list[dict[str, Any]]:
        """Per step: runs, errors, error rate and latency p50/p95/p99 (None without runs)."""
        offset, matrix = self._matrix()
        latencies: dict[str, list[float | None]] = {
            name: [None] * self.steps for name, _ in QUANTILES
        }
        if matrix.shape[1]:
            cumulative = np.cumsum(matrix, axis=1)
            totals = cumulative[:, -1]
            has_runs = totals > 0
            low = np.asarray(self.low, dtype=float)
            high = np.asarray(self.high, dtype=float)
            # Each bucket's value as ``histogram.bucket_value`` computes it, to the last bit.
            table = np.array([histogram.bucket_value(offset + i) for i in range(matrix.shape[1])])
            for name, q in QUANTILES:
                ranks = q * (totals - 1)
                positions = np.minimum(
                    (cumulative <= ranks[:, None]).sum(axis=1), matrix.shape[1] - 1
                )
                values = np.minimum(np.maximum(table[positions], low), high)
                latencies[name] = [
                    value if found else None
                    for value, found in zip(values.tolist(), has_runs.tolist(), strict=True)
                ]
        return [
            {
                "runs": runs,
                "errors": errors,
                "error_rate": errors / runs if runs else None,
                "latency_ms": {name: latencies[name][step] for name, _ in QUANTILES},
            }
            for step, (runs, errors) in enumerate(zip(self.runs, self.errors, strict=True))
        ]

    def total(self) -> dict[str, Any]:
        """Runs, errors, error rate and latency p50/p95/p99 over all the steps."""
        offset, matrix = self._matrix()
        runs, errors = sum(self.runs), sum(self.errors)
        merged = histogram.Histogram(offset, matrix.sum(axis=0))
        found = histogram.quantiles(
            merged,
            [q for _, q in QUANTILES],
            lowest=min(self.low) if runs else None,
            highest=max(self.high) if runs else None,
        )
        return {
            "runs": runs,
            "errors": errors,
            "error_rate": errors / runs if runs else None,
            "latency_ms": {name: value for (name, _), value in zip(QUANTILES, found, strict=True)},
        }


def _grouped_series(
    start: datetime, end: datetime, step: timedelta, condition: Q, key: str
) -> tuple[list[datetime], dict[str, _Series]]:
    """Per value of ``key`` (``graph__name`` or ``node``), its figures per step: one query
    over the minute rollups (steps under an hour) or the hour rollups."""
    model: type[RunRollup] = HourRollup if step >= ONE_HOUR else MinuteRollup
    slots = _slots(start, end, step)
    if not slots:
        return slots, {}
    index = {int(slot.timestamp()): position for position, slot in enumerate(slots)}
    # Each row's step comes from SQL as epoch seconds: loading thousands of timestamps with
    # time zones costs psycopg more than the rest of the page.
    found: Iterable[tuple[Any, ...]] = (
        model._default_manager.filter(condition, bucket_start__gte=slots[0], bucket_start__lt=end)
        .annotate(step_epoch=_EpochBucket("bucket_start", int(step.total_seconds())))
        .values_list(key, "step_epoch", *rollups.ROW_FIELDS)
    )
    groups: dict[str, _Series] = {}
    for name, bucket, *figures in found:
        series = groups.get(name)
        if series is None:
            series = groups[name] = _Series(len(slots))
        series.add(index[bucket], figures)
    return slots, groups


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    """``value`` to ``digits`` significant digits (shorter JSON); None for no figure."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _points(xs: Sequence[int], values: Iterable[float | None]) -> list[list[Any]]:
    return [[x, _rounded(value)] for x, value in zip(xs, values, strict=True)]


def chart(
    canvas: str,
    title: str,
    unit: str,
    datasets: list[dict[str, Any]],
    *,
    markers: list[dict[str, Any]] | None = None,
    small: bool = False,
) -> dict[str, Any]:
    """One chart as ``dashboards.js`` draws it; ``points`` is the number of x positions."""
    points = max((len(dataset["data"]) for dataset in datasets), default=0)
    return {
        "canvas": canvas,
        "title": title,
        "unit": unit,
        "kind": "time",
        "small": small,
        "points": points,
        "datasets": datasets,
        "markers": markers or [],
    }


def _throughput(figures: Sequence[dict[str, Any]], step: timedelta) -> list[float]:
    minutes = step / ONE_MINUTE
    return [row["runs"] / minutes for row in figures]


def _error_percent(figures: Sequence[dict[str, Any]]) -> list[float | None]:
    return [None if row["error_rate"] is None else 100 * row["error_rate"] for row in figures]


def _latency(figures: Sequence[dict[str, Any]], quantile: str) -> list[float | None]:
    return [row["latency_ms"][quantile] for row in figures]


# --- overview ------------------------------------------------------------------------------------


_FIRING_FIRST = Case(
    When(state=Alert.State.FIRING, then=Value(0)), default=Value(1), output_field=IntegerField()
)


def _open_alerts(limit: int = MAX_OPEN_ALERTS) -> list[dict[str, Any]]:
    """Firing alerts first, then pending ones, newest first."""
    alerts = (
        Alert.objects.filter(state__in=[Alert.State.FIRING, Alert.State.PENDING])
        .select_related("rule")
        .order_by(_FIRING_FIRST, F("fired_at").desc(nulls_last=True), "-active_at", "-id")[:limit]
    )
    return [
        {
            "id": alert.id,
            "rule": alert.rule.name,
            "severity": alert.rule.severity,
            "state": alert.state,
            "labels": alert.labels,
            "graph": alert.labels.get("graph", "") if isinstance(alert.labels, dict) else "",
            "since": (alert.fired_at or alert.active_at),
            "value": alert.value,
        }
        for alert in alerts
    ]


def _firing_per_graph() -> dict[str, int]:
    counts: dict[str, int] = {}
    rows = (
        Alert.objects.filter(state=Alert.State.FIRING)
        .annotate(graph=KT("labels__graph"))
        .values("graph")
        .annotate(n=Count("id"))
        .values_list("graph", "n")
        .order_by()
    )
    for graph, n in rows:
        if isinstance(graph, str):
            counts[graph] = counts.get(graph, 0) + n
    return counts


def _running_experiments() -> list[dict[str, Any]]:
    found = (
        Experiment.objects.filter(status=Experiment.Status.RUNNING)
        .select_related("graph")
        .prefetch_related("variants__version")
        .order_by("graph__name")
    )
    return [
        {
            "id": experiment.id,
            "key": experiment.key,
            "graph": experiment.graph.name,
            "started_at": experiment.started_at,
            "variants": [
                f"{variant.name} v{variant.version.number} ({100 * variant.weight:.0f}%)"
                for variant in sorted(experiment.variants.all(), key=lambda v: v.position)
            ],
        }
        for experiment in found
    ]


# The small charts per graph: (id suffix, series, title, y unit, legend).
OVERVIEW_CHARTS = (
    ("runs", "runs", "runs per minute", "runs/min", "runs/min"),
    ("errors", "error_rate", "error rate", "%", "error rate %"),
    ("p95", "p95", "p95 latency", "ms", "p95 ms"),
)


def overview(now: datetime) -> dict[str, Any]:
    """Per graph with runs in the last hour: runs per minute, error rate and p95 per minute
    (small charts), the hour's totals, the active version and its firing alerts; then the open
    alerts and the running experiments."""
    start = now - ONE_HOUR
    slots, groups = _grouped_series(start, now, ONE_MINUTE, Scope().filter(), "graph__name")
    xs = [_epoch_ms(slot) for slot in slots]
    active = dict(
        GraphVersion.objects.active()
        .filter(graph__name__in=list(groups))
        .values_list("graph__name", "number")
    )
    firing = _firing_per_graph()
    graphs = []
    for name, steps in groups.items():
        figures = steps.figures()
        total = steps.total()
        graphs.append(
            {
                "name": name,
                "runs": total["runs"],
                "errors": total["errors"],
                "error_rate": total["error_rate"],
                "p95_ms": total["latency_ms"]["p95"],
                "runs_per_minute": total["runs"] / 60,
                "active_version": active.get(name),
                "open_alerts": firing.get(name, 0),
                "series": {
                    "runs": _throughput(figures, ONE_MINUTE),
                    "error_rate": _error_percent(figures),
                    "p95": _latency(figures, "p95"),
                },
            }
        )
    graphs.sort(key=lambda row: (-row["runs"], row["name"]))
    charts = []
    for position, row in enumerate(graphs):
        series = row.pop("series")
        row["charts"] = own = [
            chart(
                f"overview-{position}-{kind}",
                f"{row['name']}: {title}",
                unit,
                [{"label": label, "data": _points(xs, series[key])}],
                small=True,
            )
            for kind, key, title, unit, label in OVERVIEW_CHARTS
        ]
        charts += own
    quiet = Graph.objects.exclude(name__in=[row["name"] for row in graphs]).count()
    return {
        "start": start,
        "end": now,
        "graphs": graphs,
        "quiet_graphs": quiet,
        "alerts": _open_alerts(),
        "experiments": _running_experiments(),
        "charts": charts,
    }


# --- one graph -----------------------------------------------------------------------------------


def _markers(graph: Graph, window: Window) -> list[dict[str, Any]]:
    """Version changes of the graph and its alerts (label ``graph``) firing or resolving."""
    start, end = window.start, window.end
    markers: list[dict[str, Any]] = []
    events = (
        VersionEvent.objects.filter(graph=graph, created_at__gte=start, created_at__lt=end)
        .select_related("from_version", "to_version")
        .order_by("created_at", "id")[:MAX_MARKERS]
    )
    for event in events:
        before = f"v{event.from_version.number}" if event.from_version else "none"
        markers.append(
            {
                "x": _epoch_ms(event.created_at),
                "at": event.created_at,
                "kind": "version",
                "label": f"{event.get_action_display()} {before} → v{event.to_version.number}",
            }
        )
    in_window = Q(fired_at__gte=start, fired_at__lt=end) | Q(
        resolved_at__gte=start, resolved_at__lt=end
    )
    alerts = (
        Alert.objects.filter(in_window, labels__graph=graph.name)
        .select_related("rule")
        .order_by("id")[:MAX_MARKERS]
    )
    for alert in alerts:
        for moment, kind, verb in (
            (alert.fired_at, "alert-firing", "fired"),
            (alert.resolved_at, "alert-resolved", "resolved"),
        ):
            if moment is not None and start <= moment < end:
                markers.append(
                    {
                        "x": _epoch_ms(moment),
                        "at": moment,
                        "kind": kind,
                        "label": f"{alert.rule.name} {verb}",
                    }
                )
    markers.sort(key=lambda marker: marker["x"])
    return markers


def _p95_key(row: dict[str, Any]) -> tuple[bool, float, str]:
    p95 = row["latency_ms"]["p95"]
    return (p95 is None, -(p95 or 0.0), row["node"])


def graph_page(graph: Graph, window: Window, node: str | None = None) -> dict[str, Any]:
    """Throughput, error rate and p50/p95/p99 of the graph's runs per step; p50/p95/p99 of one
    node (``node``, default the slowest at p95) and p95 of the ``TOP_NODES`` slowest; markers;
    the node table sorted by p95 (slowest first)."""
    start, end, step = window.start, window.end, window.step
    nodes = rollups.grouped_window_stats(start, end, Scope(graph.name, Scope.ALL_NODES))
    nodes.sort(key=_p95_key)
    names = [row["node"] for row in nodes]
    selected = node if node in names else (names[0] if names else None)
    charted = list(dict.fromkeys([*names[:TOP_NODES], *([selected] if selected else [])]))

    slots, runs = _grouped_series(start, end, step, Q(graph=graph, node=""), "graph__name")
    xs = [_epoch_ms(slot) for slot in slots]
    empty = _Series(len(slots)).figures()
    graph_figures = runs[graph.name].figures() if graph.name in runs else empty
    node_figures: dict[str, list[dict[str, Any]]] = {}
    if charted:
        _, per_node = _grouped_series(start, end, step, Q(graph=graph, node__in=charted), "node")
        node_figures = {name: series.figures() for name, series in per_node.items()}
    markers = _markers(graph, window)

    def dataset(label: str, values: Iterable[float | None]) -> dict[str, Any]:
        return {"label": label, "data": _points(xs, values)}

    charts = [
        chart(
            "graph-throughput",
            "Throughput",
            "runs/min",
            [dataset("runs/min", _throughput(graph_figures, step))],
            markers=markers,
        ),
        chart(
            "graph-errors",
            "Error rate",
            "%",
            [dataset("error rate %", _error_percent(graph_figures))],
            markers=markers,
        ),
        chart(
            "graph-latency",
            "Latency of the graph's runs",
            "ms",
            [dataset(q, _latency(graph_figures, q)) for q in ("p50", "p95", "p99")],
            markers=markers,
        ),
    ]
    if selected is not None:
        figures = node_figures.get(selected) or empty
        charts.append(
            chart(
                "node-latency",
                f"Latency of node {selected}",
                "ms",
                [dataset(f"{selected} {q}", _latency(figures, q)) for q in ("p50", "p95", "p99")],
                markers=markers,
            )
        )
        charts.append(
            chart(
                "nodes-p95",
                f"p95 latency of the {min(TOP_NODES, len(names))} slowest nodes",
                "ms",
                [
                    dataset(name, _latency(node_figures[name], "p95"))
                    for name in names[:TOP_NODES]
                    if name in node_figures
                ],
                markers=markers,
            )
        )
    totals = rollups.window_stats(start, end, Scope(graph.name))
    active = GraphVersion.objects.active().filter(graph=graph).values_list("number", flat=True)
    return {
        "graph": graph.name,
        "window": window.as_dict(),
        "start": start,
        "end": end,
        "step_s": int(step.total_seconds()),
        "totals": totals,
        "active_version": active.first(),
        "nodes": nodes,
        "node": selected,
        "markers": markers,
        "charts": charts,
    }


# --- system --------------------------------------------------------------------------------------


def system_page(window: Window) -> dict[str, Any]:
    """CPU and memory per host: the average and the maximum of the sampled points per step,
    binned in SQL (at most steps × hosts × 2 rows, whatever the sampling rate)."""
    step = window.step
    step_s = int(step.total_seconds())
    slots = _slots(window.start, window.end, step)
    xs = [_epoch_ms(slot) for slot in slots]
    index = {int(slot.timestamp()): position for position, slot in enumerate(slots)}
    binned = (
        MetricPoint.objects.filter(
            name__in=list(SYSTEM_METRICS),
            timestamp__gte=slots[0] if slots else window.start,
            timestamp__lt=window.end,
        )
        .annotate(host=KT("labels__host"), bucket=_EpochBucket("timestamp", step_s))
        .values("name", "host", "bucket")
        .annotate(total=Sum("value", output_field=FloatField()), n=Count("id"), peak=Max("value"))
        .values_list("name", "host", "bucket", "total", "n", "peak")
        .order_by()
    )
    series: dict[tuple[str, str], list[tuple[float, float] | None]] = {}
    for name, host, bucket, total, n, peak in binned:
        position = index.get(int(bucket))
        if position is None:
            continue
        key = (SYSTEM_METRICS[name], host or "(no host)")
        values = series.get(key)
        if values is None:
            values = series[key] = [None] * len(slots)
        values[position] = (total / n, peak)
    hosts = sorted({host for _, host in series})[:MAX_HOSTS]
    charts = []
    latest: dict[str, dict[str, float | None]] = {}
    for metric, title in (("cpu", "CPU"), ("memory", "Memory")):
        datasets = []
        for host in hosts:
            values = series.get((metric, host))
            if values is None:
                continue
            datasets.append(
                {"label": host, "data": _points(xs, [v[0] if v else None for v in values])}
            )
            seen = [v[0] for v in values if v is not None]
            latest.setdefault(host, {})[metric] = round(seen[-1], 1) if seen else None
            peaks = [v[1] for v in values if v is not None]
            latest[host][f"{metric}_peak"] = round(max(peaks), 1) if peaks else None
        charts.append(
            chart(f"system-{metric}", f"{title} % (average per step, per host)", "%", datasets)
        )
    return {
        "window": window.as_dict(),
        "start": window.start,
        "end": window.end,
        "step_s": step_s,
        "hosts": [{"host": host, **latest.get(host, {})} for host in hosts],
        "charts": charts,
    }
