"""Usage analytics (the seed's ``UsageAnalytics``), read from rollups where they suffice.

Counts per graph and per node come from the rollups, so they cost the same at any volume.
Per-user figures and distinct users and sessions need the raw graph runs and use their
``(user_id, started_at)`` and ``(started_at)`` / ``(graph, started_at)`` indexes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q, Sum

from monitoring.models import GraphRun, RunStatus
from monitoring.rollups import Scope, window_pieces


def _rollup_counts(
    start: datetime, end: datetime, scope: Scope, by: tuple[str, ...]
) -> dict[tuple[Any, ...], dict[str, int]]:
    totals: dict[tuple[Any, ...], dict[str, int]] = {}
    for model, lo, hi in window_pieces(start, end):
        rows = (
            model._default_manager.filter(scope.filter(), bucket_start__gte=lo, bucket_start__lt=hi)
            .values(*by)
            .annotate(runs=Sum("count"), errors=Sum("count", filter=Q(status=RunStatus.ERROR)))
        )
        for row in rows:
            key = tuple(row[name] for name in by)
            entry = totals.setdefault(key, {"runs": 0, "errors": 0})
            entry["runs"] += row["runs"] or 0
            entry["errors"] += row["errors"] or 0
    return totals


def popular_graphs(start: datetime, end: datetime, limit: int) -> list[dict[str, Any]]:
    """Graphs by number of runs in the window, most used first."""
    totals = _rollup_counts(start, end, Scope(), ("graph__name",))
    ranked = sorted(totals.items(), key=lambda item: (-item[1]["runs"], item[0]))
    return [{"graph": key[0], **counts} for key, counts in ranked[:limit]]


def node_usage(start: datetime, end: datetime, graph: str | None) -> list[dict[str, Any]]:
    """Runs and errors per graph × node in the window, most used first."""
    scope = Scope(graph=graph, node=Scope.ALL_NODES)
    totals = _rollup_counts(start, end, scope, ("graph__name", "node"))
    ranked = sorted(totals.items(), key=lambda item: (-item[1]["runs"], item[0]))
    return [{"graph": key[0], "node": key[1], **counts} for key, counts in ranked]


def user_analytics(user_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Total runs, runs per graph (favourites first), first and last run of one user."""
    runs = GraphRun.objects.filter(user_id=user_id).in_window(start, end)
    summary = runs.aggregate(
        total=Count("id"),
        errors=Count("id", filter=Q(status=RunStatus.ERROR)),
        first=Min("started_at"),
        last=Max("started_at"),
        sessions=Count("session_id", distinct=True, filter=~Q(session_id="")),
    )
    per_graph = (
        runs.values("graph__name").annotate(runs=Count("id")).order_by("-runs", "graph__name")
    )
    return {
        "user_id": user_id,
        "total_runs": summary["total"],
        "errors": summary["errors"],
        "sessions": summary["sessions"],
        "runs_per_graph": {row["graph__name"]: row["runs"] for row in per_graph},
        "first_run": summary["first"],
        "last_run": summary["last"],
    }


def active_users(start: datetime, end: datetime, graph: str | None) -> dict[str, Any]:
    """Distinct users and sessions with at least one graph run in the window."""
    runs = GraphRun.objects.in_window(start, end)
    if graph is not None:
        runs = runs.filter(graph__name=graph)
    totals = runs.aggregate(
        runs=Count("id"),
        users=Count("user_id", distinct=True, filter=~Q(user_id="")),
        sessions=Count("session_id", distinct=True, filter=~Q(session_id="")),
    )
    return {"graph": graph, **totals}
