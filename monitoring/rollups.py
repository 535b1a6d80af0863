"""Per-minute and per-hour rollups: fed by ingest, read by every window query.

Writes, in two steps so that ingest requests never wait for each other:
1. Ingest summarises its batch (``encode_delta``) into one ``RollupDelta`` row, in the same
   transaction as the raw rows.
2. A Celery beat task (``apply_pending``, every ``LGMON_ROLLUP_INTERVAL_S``) claims the
   pending deltas, merges them and adds them to the rollup rows, each row once per round.
   Window statistics therefore lag ingest by about that interval.

Reads: a window is cut into whole hours (hour rollups) and the minutes at either edge
(minute rollups), so a 24 h window reads at most about 140 buckets per series, whatever the
number of raw runs. Windows have minute resolution: the start is rounded down to its minute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from django.db import connection, transaction
from django.db.models import Q

from versioning.models import Graph

from . import histogram
from .models import (
    HourRollup,
    MinuteRollup,
    RollupDelta,
    RunRollup,
    RunStatus,
    SessionActivity,
)

if TYPE_CHECKING:
    from .ingest import GraphRunIn

RollupKey = tuple[datetime, int, str, str]
SessionKey = tuple[datetime, int, str, str]
ONE_MINUTE = timedelta(minutes=1)
ONE_HOUR = timedelta(hours=1)
UPSERT_CHUNK = 500


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + ONE_HOUR


# --- writing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Summary:
    """Count, sum, extremes and histogram of some durations; summaries add up."""

    count: int
    total_ms: float
    low_ms: float
    high_ms: float
    parts: list[histogram.Histogram]

    def add(self, other: Summary) -> None:
        self.count += other.count
        self.total_ms += other.total_ms
        self.low_ms = min(self.low_ms, other.low_ms)
        self.high_ms = max(self.high_ms, other.high_ms)
        self.parts.extend(other.parts)

    @property
    def histogram(self) -> histogram.Histogram:
        merged = histogram.merge(self.parts)
        self.parts = [merged]
        return merged


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def encode_delta(runs: Iterable[GraphRunIn], graph_ids: dict[str, int]) -> bytes:
    """What a batch adds to the rollups, for a ``RollupDelta`` row.

    Minute-level summaries per graph × node × status (node ``''`` for graph runs) and run
    counts per hour × graph × user × session, as compact JSON.
    """
    durations: dict[RollupKey, list[float]] = {}
    sessions: dict[tuple[int, int, str, str], int] = {}
    for run in runs:
        graph_id = graph_ids[run.graph]
        durations.setdefault((floor_minute(run.started_at), graph_id, "", run.status), []).append(
            run.duration_ms
        )
        for node in run.node_runs:
            key = (floor_minute(node.started_at), graph_id, node.node, node.status)
            durations.setdefault(key, []).append(node.duration_ms)
        if run.user_id or run.session_id:
            hour = _epoch(floor_hour(run.started_at))
            session = (hour, graph_id, run.user_id, run.session_id)
            sessions[session] = sessions.get(session, 0) + 1
    entries = []
    for (minute, graph_id, node_name, status), values in durations.items():
        offset, counts = histogram.dense_counts(values)
        entries.append(
            (
                _epoch(minute),
                graph_id,
                node_name,
                status,
                len(values),
                sum(values),
                min(values),
                max(values),
                offset,
                counts,
            )
        )
    return orjson.dumps(
        {"runs": entries, "sessions": [(*key, count) for key, count in sessions.items()]}
    )


def apply_pending(max_deltas: int = 200, max_rounds: int = 200) -> int:
    """Fold pending ``RollupDelta`` rows into the rollups; returns how many were applied.

    Each round claims up to ``max_deltas`` of them (``FOR UPDATE SKIP LOCKED``, so workers
    running this at once take different rows), merges them in memory, adds the result to the
    minute rollups, hour rollups and session activity, and deletes them, in one transaction.
    A rollup row is so written once per round, however many batches touched it.
    """
    applied = 0
    for _ in range(max_rounds):
        if not RollupDelta.objects.exists():  # no write transaction (SQLite: lock) for nothing
            break
        with transaction.atomic():
            deltas = list(
                RollupDelta.objects.select_for_update(skip_locked=True)
                .order_by("id")
                .values_list("id", "payload")[:max_deltas]
            )
            if not deltas:
                break
            minutes: dict[RollupKey, Summary] = {}
            hours: dict[RollupKey, Summary] = {}
            sessions: dict[SessionKey, int] = {}
            for _id, payload in deltas:
                _merge_delta(orjson.loads(payload), minutes, hours, sessions)
            _drop_deleted_graphs(minutes, hours, sessions)
            upsert(MinuteRollup, minutes)
            upsert(HourRollup, hours)
            upsert_activity(sessions)
            RollupDelta.objects.filter(id__in=[delta_id for delta_id, _ in deltas]).delete()
        applied += len(deltas)
        if len(deltas) < max_deltas:
            break
    return applied


def _merge_delta(
    delta: dict[str, Any],
    minutes: dict[RollupKey, Summary],
    hours: dict[RollupKey, Summary],
    sessions: dict[SessionKey, int],
) -> None:
    for minute, graph_id, node, status, count, total, low, high, offset, counts in delta["runs"]:
        part = histogram.Histogram(offset, np.asarray(counts, dtype=np.int64))
        moment = _moment(minute)
        for groups, bucket in ((minutes, moment), (hours, floor_hour(moment))):
            summary = Summary(count, total, low, high, [part])
            key = (bucket, graph_id, node, status)
            if key in groups:
                groups[key].add(summary)
            else:
                groups[key] = summary
    for hour, graph_id, user_id, session_id, runs in delta["sessions"]:
        key = (_moment(hour), graph_id, user_id, session_id)
        sessions[key] = sessions.get(key, 0) + runs


def _drop_deleted_graphs(*groups: dict[Any, Any]) -> None:
    """Forget figures of graphs deleted (in the admin) since their runs were ingested."""
    graph_ids = {key[1] for group in groups for key in group}
    gone = graph_ids - set(Graph.objects.filter(id__in=graph_ids).values_list("id", flat=True))
    for group in groups:
        for key in [key for key in group if key[1] in gone]:
            del group[key]


def upsert(model: type[RunRollup], groups: dict[RollupKey, Summary]) -> None:
    """Add each summary to its rollup row, creating the rows that do not exist yet.

    1. Insert every key with its own figures, skipping keys that exist already;
       ``RETURNING id`` tells which rows were new.
    2. Lock the rows that existed (``SELECT ... FOR UPDATE``; SQLite's transaction holds the
       write lock already), add the figures to them in Python, and write them back.

    Keys are handled in sorted order so that concurrent transactions take row locks in the
    same order and cannot deadlock each other. Histograms are merged in Python because
    neither database can add two dense count arrays with different offsets in SQL.
    """
    if not groups:
        return
    table = model._meta.db_table
    keys = sorted(groups)
    adapt = connection.ops.adapt_datetimefield_value
    rows = []
    for bucket_start, graph_id, node, status in keys:
        summary = groups[(bucket_start, graph_id, node, status)]
        rows.append(
            (
                adapt(bucket_start),
                graph_id,
                node,
                status,
                summary.count,
                summary.total_ms,
                summary.low_ms,
                summary.high_ms,
                summary.histogram.to_bytes(),
            )
        )
    new_ids = _insert_many(
        f"INSERT INTO {table} (bucket_start, graph_id, node, status, count, duration_sum_ms,"
        " duration_min_ms, duration_max_ms, histogram) VALUES {values}"
        " ON CONFLICT (bucket_start, graph_id, node, status) DO NOTHING RETURNING id",
        rows,
    )
    if len(new_ids) == len(keys):
        return
    # Buckets × graphs is a superset of the keys that needs a few parameters, not four a key;
    # the extra rows it locks are rows of the same buckets, in the same lock order.
    candidates = (
        model._default_manager.select_for_update()
        .filter(bucket_start__in={key[0] for key in keys}, graph_id__in={key[1] for key in keys})
        .exclude(pk__in=new_ids)
        .order_by("bucket_start", "graph_id", "node", "status")
    )
    existing = [
        row
        for row in candidates
        if (row.bucket_start, row.graph_id, row.node, row.status) in groups
    ]
    for row in existing:
        summary = groups[(row.bucket_start, row.graph_id, row.node, row.status)]
        row.count += summary.count
        row.duration_sum_ms += summary.total_ms
        row.duration_min_ms = min(row.duration_min_ms, summary.low_ms)
        row.duration_max_ms = max(row.duration_max_ms, summary.high_ms)
        stored = histogram.Histogram.from_bytes(row.histogram)
        row.histogram = histogram.merge([stored, summary.histogram]).to_bytes()
    model._default_manager.bulk_update(
        existing,
        ["count", "duration_sum_ms", "duration_min_ms", "duration_max_ms", "histogram"],
        # Django writes CASE WHEN per field: long statements are slow to build and to run.
        batch_size=100,
    )


def upsert_activity(sessions: dict[SessionKey, int]) -> None:
    """Add run counts per hour × graph × user × session to the session activity."""
    if not sessions:
        return
    table = SessionActivity._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    _insert_many(
        f"INSERT INTO {table} (bucket_start, graph_id, user_id, session_id, runs)"
        " VALUES {values} ON CONFLICT (bucket_start, graph_id, user_id, session_id)"
        f" DO UPDATE SET runs = {table}.runs + excluded.runs",
        [(adapt(key[0]), *key[1:], sessions[key]) for key in sorted(sessions)],
    )


def _insert_many(statement: str, rows: Sequence[Sequence[Any]]) -> list[int]:
    """Run an ``INSERT ... VALUES {values}`` for the rows, ``UPSERT_CHUNK`` rows a statement,
    and return what it returns (the first column of each row), if anything."""
    returned: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), UPSERT_CHUNK):
            chunk = rows[start : start + UPSERT_CHUNK]
            placeholders = "(" + ", ".join(["%s"] * len(chunk[0])) + ")"
            cursor.execute(
                statement.replace("{values}", ", ".join([placeholders] * len(chunk))),
                [value for row in chunk for value in row],
            )
            if cursor.description is not None:
                returned.extend(row[0] for row in cursor.fetchall())
    return returned


# --- reading ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    """What a window (or one step of a series) holds for one graph, node or everything.

    Rollup rows are added with ``add``; histograms are merged once, in ``as_dict``.
    """

    by_status: dict[str, int] = field(default_factory=dict)
    count: int = 0
    total_ms: float = 0.0
    low_ms: float = math.inf
    high_ms: float = -math.inf
    parts: list[histogram.Histogram] = field(default_factory=list)

    def add(self, row: Sequence[Any]) -> None:
        """Add a rollup row ``(status, count, sum, min, max, histogram bytes)``."""
        status, count, total, low, high, histogram_bytes = row
        self.by_status[status] = self.by_status.get(status, 0) + count
        self.count += count
        self.total_ms += total
        self.low_ms = min(self.low_ms, low)
        self.high_ms = max(self.high_ms, high)
        self.parts.append(histogram.Histogram.from_bytes(histogram_bytes))

    def as_dict(self) -> dict[str, Any]:
        has_runs = self.count > 0
        p50, p95, p99 = histogram.quantiles(
            histogram.merge(self.parts),
            (0.5, 0.95, 0.99),
            lowest=self.low_ms if has_runs else None,
            highest=self.high_ms if has_runs else None,
        )
        errors = self.by_status.get(RunStatus.ERROR, 0)
        return {
            "runs": self.count,
            "errors": errors,
            "error_rate": errors / self.count if has_runs else None,
            "by_status": {status: self.by_status.get(status, 0) for status in RunStatus.values},
            "latency_ms": {
                "avg": self.total_ms / self.count if has_runs else None,
                "min": self.low_ms if has_runs else None,
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "max": self.high_ms if has_runs else None,
            },
        }


@dataclass(frozen=True, slots=True)
class Scope:
    """Which rollup rows a query reads.

    ``graph`` None means every graph. ``node`` None reads the graph runs themselves; a node
    name reads that node's runs; ``ALL_NODES`` reads every node's runs (for per-node tables).
    """

    graph: str | None = None
    node: str | None = None

    ALL_NODES = "*"

    def filter(self) -> Q:
        condition = Q()
        if self.graph is not None:
            condition &= Q(graph__name=self.graph)
        if self.node is None:
            condition &= Q(node="")
        elif self.node == self.ALL_NODES:
            condition &= ~Q(node="")
        else:
            condition &= Q(node=self.node)
        return condition


def window_pieces(
    start: datetime, end: datetime
) -> list[tuple[type[RunRollup], datetime, datetime]]:
    """Cut ``[start, end)`` into minute and hour bucket ranges (see the module docstring)."""
    start = floor_minute(start)
    first_hour, last_hour = ceil_hour(start), floor_hour(end)
    if first_hour >= last_hour:
        return [(MinuteRollup, start, end)]
    pieces: list[tuple[type[RunRollup], datetime, datetime]] = []
    if start < first_hour:
        pieces.append((MinuteRollup, start, first_hour))
    pieces.append((HourRollup, first_hour, last_hour))
    if last_hour < end:
        pieces.append((MinuteRollup, last_hour, end))
    return pieces


ROW_FIELDS = (
    "status",
    "count",
    "duration_sum_ms",
    "duration_min_ms",
    "duration_max_ms",
    "histogram",
)


def rows(
    model: type[RunRollup], lo: datetime, hi: datetime, scope: Scope, extra: Sequence[str] = ()
) -> Iterable[tuple[Any, ...]]:
    """Rollup rows in ``[lo, hi)`` as tuples: the ``extra`` fields, then ``Stats.add``'s."""
    # A plain fetch: a window reads thousands of rows at most, and PostgreSQL's server-side
    # cursor (``.iterator()``) costs round trips even for a few.
    found: Iterable[tuple[Any, ...]] = model._default_manager.filter(
        scope.filter(), bucket_start__gte=lo, bucket_start__lt=hi
    ).values_list(*extra, *ROW_FIELDS)
    return found


def window_stats(start: datetime, end: datetime, scope: Scope) -> dict[str, Any]:
    """Run count, error rate and latency (avg, min, p50, p95, p99, max) over a window."""
    stats = Stats()
    for model, lo, hi in window_pieces(start, end):
        for row in rows(model, lo, hi, scope):
            stats.add(row)
    return stats.as_dict()


def grouped_window_stats(start: datetime, end: datetime, scope: Scope) -> list[dict[str, Any]]:
    """``window_stats`` per graph (or per graph × node when the scope reads nodes)."""
    groups: dict[tuple[str, str], Stats] = {}
    for model, lo, hi in window_pieces(start, end):
        for graph_name, node, *figures in rows(model, lo, hi, scope, ("graph__name", "node")):
            stats = groups.get((graph_name, node))
            if stats is None:
                stats = groups[(graph_name, node)] = Stats()
            stats.add(figures)
    results = []
    for (graph_name, node), stats in sorted(groups.items()):
        entry: dict[str, Any] = {"graph": graph_name}
        if scope.node is not None:
            entry["node"] = node
        entry.update(stats.as_dict())
        results.append(entry)
    return results


STEPS = {"1m": ONE_MINUTE, "5m": timedelta(minutes=5), "1h": ONE_HOUR}


def series(start: datetime, end: datetime, step: timedelta, scope: Scope) -> list[dict[str, Any]]:
    """Window statistics for every ``step`` from ``start`` (rounded down to a step) to ``end``.

    Steps of an hour read hour rollups, shorter steps minute rollups. Empty steps are
    included with zero runs, so a chart's time axis has no gaps.
    """
    model: type[RunRollup] = HourRollup if step >= ONE_HOUR else MinuteRollup
    epoch = datetime(2000, 1, 1, tzinfo=start.tzinfo)
    first = start - (start - epoch) % step
    steps: dict[datetime, Stats] = {}
    moment = first
    while moment < end:
        steps[moment] = Stats()
        moment += step
    for row in rows(model, first, end, scope, ("bucket_start",)):
        bucket = row[0]
        steps[bucket - (bucket - epoch) % step].add(row[1:])
    return [{"start": slot, **stats.as_dict()} for slot, stats in steps.items()]
