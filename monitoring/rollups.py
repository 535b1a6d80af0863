"""Per-minute and per-hour rollups: written by ingest, read by every window query.

Writes: ingest aggregates a batch in Python and adds it to the rollup rows with one
``INSERT ... ON CONFLICT DO UPDATE`` per table that sums counts and merges histograms inside
the database, so concurrent ingest requests never lose each other's counts.

Reads: a window is cut into whole hours (hour rollups) and the minutes at either edge
(minute rollups), so a 24 h window reads at most about 140 buckets per series, whatever the
number of raw runs. Windows have minute resolution: the start is rounded down to its minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from django.db import connection
from django.db.models import Q

from . import histogram
from .models import HourRollup, MinuteRollup, RunRollup, RunStatus, SessionActivity

if TYPE_CHECKING:
    from .ingest import GraphRunIn

RollupKey = tuple[datetime, int, str, str]
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


@dataclass(slots=True)
class Accumulator:
    count: int = 0
    total_ms: float = 0.0
    low_ms: float = float("inf")
    high_ms: float = float("-inf")
    buckets: histogram.Histogram = field(default_factory=dict)

    def add(self, duration_ms: float) -> None:
        self.count += 1
        self.total_ms += duration_ms
        self.low_ms = min(self.low_ms, duration_ms)
        self.high_ms = max(self.high_ms, duration_ms)
        key = str(histogram.bucket_index(duration_ms))
        self.buckets[key] = self.buckets.get(key, 0) + 1

    def merge(self, count: int, total: float, low: float, high: float, buckets: Any) -> None:
        self.count += count
        self.total_ms += total
        self.low_ms = min(self.low_ms, low)
        self.high_ms = max(self.high_ms, high)
        histogram.merge_into(self.buckets, buckets)


# --- writing ---------------------------------------------------------------------------------


def aggregate(
    runs: Iterable[GraphRunIn], graph_ids: dict[str, int], floor: Callable[[datetime], datetime]
) -> dict[RollupKey, Accumulator]:
    """Group graph runs (node ``''``) and their node runs by bucket × graph × node × status."""
    groups: dict[RollupKey, Accumulator] = {}
    for run in runs:
        graph_id = graph_ids[run.graph]
        key: RollupKey = (floor(run.started_at), graph_id, "", run.status)
        acc = groups.get(key)
        if acc is None:
            acc = groups[key] = Accumulator()
        acc.add(run.duration_ms)
        for node in run.node_runs:
            key = (floor(node.started_at), graph_id, node.node, node.status)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = Accumulator()
            acc.add(node.duration_ms)
    return groups


def add_runs(runs: Sequence[GraphRunIn], graph_ids: dict[str, int]) -> None:
    """Add freshly stored runs to the minute and hour rollups and the session activity
    (call inside the ingest transaction)."""
    for model, floor in ((MinuteRollup, floor_minute), (HourRollup, floor_hour)):
        upsert(model, aggregate(runs, graph_ids, floor))
    upsert_activity(runs, graph_ids)


def upsert_activity(runs: Sequence[GraphRunIn], graph_ids: dict[str, int]) -> None:
    """Count runs per hour × graph × user × session, adding to the stored rows."""
    counts: dict[tuple[datetime, int, str, str], int] = {}
    for run in runs:
        if run.user_id or run.session_id:
            key = (floor_hour(run.started_at), graph_ids[run.graph], run.user_id, run.session_id)
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return
    table = SessionActivity._meta.db_table
    keys = sorted(counts)
    with connection.cursor() as cursor:
        for start in range(0, len(keys), UPSERT_CHUNK):
            chunk = keys[start : start + UPSERT_CHUNK]
            params: list[Any] = []
            for key in chunk:
                params.extend((*key, counts[key]))
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (bucket_start, graph_id, user_id, session_id, runs)"
                f" VALUES {values}"
                " ON CONFLICT (bucket_start, graph_id, user_id, session_id) DO UPDATE SET"
                f" runs = {table}.runs + excluded.runs",
                params,
            )


def upsert(model: type[RunRollup], groups: dict[RollupKey, Accumulator]) -> None:
    """Add each group to its rollup row, creating the rows that do not exist yet.

    Keys are written in sorted order so that concurrent transactions lock rows in the same
    order and cannot deadlock each other.
    """
    table = model._meta.db_table
    keys = sorted(groups)
    postgres = connection.vendor == "postgresql"
    if postgres:
        least, greatest, each, agg, cast = (
            "LEAST",
            "GREATEST",
            "jsonb_each_text",
            "jsonb_object_agg",
            "::bigint",
        )
    else:
        least, greatest, each, agg, cast = "MIN", "MAX", "json_each", "json_group_object", ""
    merged_histogram = (
        f"(SELECT {agg}(k, s) FROM (SELECT k, SUM(v) AS s FROM ("
        f"SELECT key AS k, value{cast} AS v FROM {each}({table}.histogram) UNION ALL "
        f"SELECT key AS k, value{cast} AS v FROM {each}(excluded.histogram)"
        ") AS u GROUP BY k) AS g)"
    )
    with connection.cursor() as cursor:
        for start in range(0, len(keys), UPSERT_CHUNK):
            chunk = keys[start : start + UPSERT_CHUNK]
            params: list[Any] = []
            for key in chunk:
                acc = groups[key]
                params.extend(key)
                params.extend(
                    (
                        acc.count,
                        acc.total_ms,
                        acc.low_ms,
                        acc.high_ms,
                        orjson.dumps(acc.buckets).decode(),
                    )
                )
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} (bucket_start, graph_id, node, status, count,"
                " duration_sum_ms, duration_min_ms, duration_max_ms, histogram)"
                f" VALUES {values}"
                " ON CONFLICT (bucket_start, graph_id, node, status) DO UPDATE SET"
                f" count = {table}.count + excluded.count,"
                f" duration_sum_ms = {table}.duration_sum_ms + excluded.duration_sum_ms,"
                f" duration_min_ms = {least}({table}.duration_min_ms, excluded.duration_min_ms),"
                f" duration_max_ms = {greatest}({table}.duration_max_ms, excluded.duration_max_ms),"
                f" histogram = {merged_histogram}",
                params,
            )


# --- reading ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    """What a window (or one step of a series) holds for one graph, node or everything."""

    by_status: dict[str, Accumulator] = field(default_factory=dict)

    def merge_row(self, status: str, row: dict[str, Any]) -> None:
        acc = self.by_status.get(status)
        if acc is None:
            acc = self.by_status[status] = Accumulator()
        acc.merge(
            row["count"],
            row["duration_sum_ms"],
            row["duration_min_ms"],
            row["duration_max_ms"],
            row["histogram"],
        )

    def as_dict(self) -> dict[str, Any]:
        total = Accumulator()
        for acc in self.by_status.values():
            total.merge(acc.count, acc.total_ms, acc.low_ms, acc.high_ms, acc.buckets)
        errors = self.by_status[RunStatus.ERROR].count if RunStatus.ERROR in self.by_status else 0
        p50, p95, p99 = histogram.quantiles(
            total.buckets, (0.5, 0.95, 0.99), lowest=total.low_ms, highest=total.high_ms
        )
        has_runs = total.count > 0
        return {
            "runs": total.count,
            "errors": errors,
            "error_rate": errors / total.count if has_runs else None,
            "by_status": {
                status: self.by_status[status].count if status in self.by_status else 0
                for status in RunStatus.values
            },
            "latency_ms": {
                "avg": total.total_ms / total.count if has_runs else None,
                "min": total.low_ms if has_runs else None,
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "max": total.high_ms if has_runs else None,
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


_ROW_FIELDS = (
    "status",
    "count",
    "duration_sum_ms",
    "duration_min_ms",
    "duration_max_ms",
    "histogram",
)


def _rows(
    model: type[RunRollup], lo: datetime, hi: datetime, scope: Scope, extra: Sequence[str]
) -> Iterable[dict[str, Any]]:
    rows: Iterable[dict[str, Any]] = (
        model._default_manager.filter(scope.filter(), bucket_start__gte=lo, bucket_start__lt=hi)
        .values(*extra, *_ROW_FIELDS)
        .iterator(chunk_size=2000)
    )
    return rows


def window_stats(start: datetime, end: datetime, scope: Scope) -> dict[str, Any]:
    """Run count, error rate and latency (avg, min, p50, p95, p99, max) over a window."""
    stats = Stats()
    for model, lo, hi in window_pieces(start, end):
        for row in _rows(model, lo, hi, scope, ()):
            stats.merge_row(row["status"], row)
    return stats.as_dict()


def grouped_window_stats(start: datetime, end: datetime, scope: Scope) -> list[dict[str, Any]]:
    """``window_stats`` per graph (or per graph × node when the scope reads nodes)."""
    groups: dict[tuple[str, str], Stats] = {}
    for model, lo, hi in window_pieces(start, end):
        for row in _rows(model, lo, hi, scope, ("graph__name", "node")):
            key = (row["graph__name"], row["node"])
            stats = groups.get(key)
            if stats is None:
                stats = groups[key] = Stats()
            stats.merge_row(row["status"], row)
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
    for row in _rows(model, first, end, scope, ("bucket_start",)):
        bucket = row["bucket_start"]
        slot = bucket - (bucket - epoch) % step
        steps[slot].merge_row(row["status"], row)
    return [{"start": slot, **stats.as_dict()} for slot, stats in steps.items()]
