"""CSV export of graph runs and node runs (the API's ``export/*.csv`` and the admin's action),
and the cell formatting the analytics CSV renderer shares.

Rows are streamed: the query is read 2,000 rows at a time and written out as it goes, so an
export of any size holds only one chunk in memory.

Formula (CSV) injection: a spreadsheet opening the file runs a cell that starts with ``=``,
``+``, ``-`` or ``@`` as a formula (and tab or carriage return can lead to one). Text cells
starting with one of these get a leading ``'``, as OWASP advises, so they show as text; the
value a program reads back then has that quote in front. Numbers and times written by lgmon
itself are never changed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from django.utils import timezone

from .models import GraphRun, NodeRun

CHUNK_SIZE = 2000
"""Rows read from the database at a time."""

_ROWS_PER_WRITE = 500
"""Rows joined into one piece of the streamed response."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

RUN_COLUMNS = (
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
    "node_runs",
)
NODE_RUN_COLUMNS = (
    "run_id",
    "graph_run_id",
    "graph",
    "node",
    "status",
    "started_at",
    "duration_ms",
    "attempt",
    "error",
)


def safe_text(value: str) -> str:
    """The text with a leading ``'`` when a spreadsheet would take it for a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the JSON API writes times."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cell(value: Any) -> str:
    """One value as CSV text: empty for None, ISO 8601 UTC for times, text guarded against
    formula injection."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return safe_text(str(value))


class _Echo:
    """A file-like object whose ``write`` hands the line back, for ``csv.writer``."""

    def write(self, value: str) -> str:
        return value


def lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV text of a header and rows, a few hundred rows per piece."""
    writer = csv.writer(_Echo())
    pending = [writer.writerow([cell(name) for name in header])]
    for row in rows:
        pending.append(writer.writerow([cell(value) for value in row]))
        if len(pending) >= _ROWS_PER_WRITE:
            yield "".join(pending)
            pending = []
    if pending:
        yield "".join(pending)


def filename(name: str) -> str:
    """``lgmon-<name>-<UTC date>.csv``."""
    return f"lgmon-{name}-{timezone.now().astimezone(UTC):%Y-%m-%d}.csv"


def attachment(name: str) -> str:
    """A Content-Disposition header value for ``filename(name)``."""
    return f'attachment; filename="{filename(name)}"'


def streaming_response(
    name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = attachment(name)
    return response


# --- runs and node runs -------------------------------------------------------------------------


RUN_LOOKUPS = (
    ("graph", "graph__name"),
    ("user_id", "user_id"),
    ("session_id", "session_id"),
    ("version", "version"),
)
NODE_RUN_LOOKUPS = (
    ("graph", "graph_run__graph__name"),
    ("user_id", "graph_run__user_id"),
    ("session_id", "graph_run__session_id"),
    ("node", "node"),
)


def filter_runs(queryset: QuerySet[GraphRun], params: Mapping[str, Any]) -> QuerySet[GraphRun]:
    """Graph runs matching validated filters (``RunExportFilterSerializer``)."""
    return _filtered(queryset, params, RUN_LOOKUPS)


def filter_node_runs(queryset: QuerySet[NodeRun], params: Mapping[str, Any]) -> QuerySet[NodeRun]:
    """Node runs matching validated filters (``NodeRunExportFilterSerializer``): ``status``,
    ``since`` and ``until`` are the node run's, the others its graph run's."""
    return _filtered(queryset, params, NODE_RUN_LOOKUPS)


def _filtered(
    queryset: QuerySet[Any], params: Mapping[str, Any], lookups: Sequence[tuple[str, str]]
) -> QuerySet[Any]:
    for name, lookup in lookups:
        if params.get(name):
            queryset = queryset.filter(**{lookup: params[name]})
    if "status" in params:
        queryset = queryset.filter(status=params["status"])
    if "since" in params:
        queryset = queryset.filter(started_at__gte=params["since"])
    if "until" in params:
        queryset = queryset.filter(started_at__lt=params["until"])
    return queryset


def run_rows(queryset: QuerySet[GraphRun]) -> Iterator[tuple[Any, ...]]:
    """``RUN_COLUMNS`` of the runs, newest first, read in chunks."""
    node_runs = (
        NodeRun.objects.filter(graph_run=OuterRef("pk"))
        .order_by()
        .values("graph_run")
        .annotate(count=Count("id"))
        .values("count")
    )
    rows = (
        queryset.annotate(
            node_run_count=Coalesce(Subquery(node_runs, output_field=IntegerField()), 0)
        )
        .order_by("-started_at", "-id")
        .values_list(
            "run_id",
            "parent_run_id",
            "graph__name",
            "status",
            "started_at",
            "duration_ms",
            "user_id",
            "session_id",
            "version",
            "experiment",
            "error",
            "node_run_count",
        )
    )
    return rows.iterator(chunk_size=CHUNK_SIZE)


def node_run_rows(queryset: QuerySet[NodeRun]) -> Iterator[tuple[Any, ...]]:
    """``NODE_RUN_COLUMNS`` of the node runs, newest first, read in chunks."""
    rows = queryset.order_by("-started_at", "-id").values_list(
        "run_id",
        "graph_run__run_id",
        "graph_run__graph__name",
        "node",
        "status",
        "started_at",
        "duration_ms",
        "attempt",
        "error",
    )
    return rows.iterator(chunk_size=CHUNK_SIZE)


def runs_response(queryset: QuerySet[GraphRun]) -> StreamingHttpResponse:
    return streaming_response("runs", RUN_COLUMNS, run_rows(queryset))


def node_runs_response(queryset: QuerySet[NodeRun]) -> StreamingHttpResponse:
    return streaming_response("node-runs", NODE_RUN_COLUMNS, node_run_rows(queryset))
