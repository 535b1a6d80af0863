from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import ingest, rollups
from .auth import IngestScope
from .models import GraphRun
from .serializers import (
    GraphRunSerializer,
    MinutesQuerySerializer,
    RunFilterSerializer,
    SeriesQuerySerializer,
    WindowQuerySerializer,
)


class IngestView(APIView):
    """``POST /api/v1/ingest/``: a batch of graph runs (with node runs) and metric points.

    Answers 200 when every item was created or was a duplicate, 207 when some were rejected
    and others stored, 400 when all were rejected or the body is unusable, 413 past the limits.
    """

    permission_classes = [IngestScope]
    parser_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            if declared.isdigit() and int(declared) > settings.LGMON_INGEST_MAX_BODY_BYTES:
                # Refuse before reading a body that is too large anyway.
                raise ingest.BatchError(413, ingest.body_too_large())
            body = ingest.decompress(request.body, request.headers.get("Content-Encoding", ""))
            data = ingest.parse_body(body)
        except ingest.BatchError as exc:
            return Response({"detail": exc.detail}, status=exc.status)
        outcome = ingest.ingest(data, timezone.now())
        results = {
            "summary": outcome.counts,
            "graph_runs": outcome.graph_runs,
            "metric_points": outcome.metric_points,
        }
        return Response(results, status=outcome.http_status)


def _validated(
    serializer_class: type[WindowQuerySerializer] | type[MinutesQuerySerializer], request: Request
) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params, context={"now": timezone.now()})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _window_echo(params: dict[str, Any]) -> dict[str, Any]:
    scope: rollups.Scope = params["scope"]
    return {
        "graph": scope.graph,
        "node": scope.node,
        "start": params["start"],
        "end": params["end"],
    }


class StatsView(APIView):
    """Run count, error rate and latency percentiles for one graph, one node or everything.

    Without ``node`` it describes graph runs; with ``node`` that node's runs (in one graph
    when ``graph`` is given, else in every graph).
    """

    def get(self, request: Request) -> Response:
        params = _validated(WindowQuerySerializer, request)
        stats = rollups.window_stats(params["start"], params["end"], params["scope"])
        return Response({**_window_echo(params), **stats})


class GraphStatsView(APIView):
    """The same statistics per graph, for every graph with runs in the window."""

    def get(self, request: Request) -> Response:
        params = _validated(WindowQuerySerializer, request)
        scope = rollups.Scope(graph=params.get("graph"))
        rows = rollups.grouped_window_stats(params["start"], params["end"], scope)
        return Response({"start": params["start"], "end": params["end"], "results": rows})


class NodeStatsView(APIView):
    """The same statistics per graph × node, slowest p95 first."""

    def get(self, request: Request) -> Response:
        params = _validated(WindowQuerySerializer, request)
        scope = rollups.Scope(graph=params.get("graph"), node=rollups.Scope.ALL_NODES)
        rows = rollups.grouped_window_stats(params["start"], params["end"], scope)
        rows.sort(key=lambda row: -(row["latency_ms"]["p95"] or 0.0))
        return Response({"start": params["start"], "end": params["end"], "results": rows})


class SeriesView(APIView):
    """A time series of the statistics in steps of ``1m``, ``5m`` or ``1h``."""

    def get(self, request: Request) -> Response:
        params = _validated(SeriesQuerySerializer, request)
        points = rollups.series(params["start"], params["end"], params["step"], params["scope"])
        return Response(
            {
                **_window_echo(params),
                "step_seconds": params["step"].total_seconds(),
                "points": points,
            }
        )


class ErrorRateView(APIView):
    """The seed's ``get_error_rate(graph_id, minutes)``: percent of graph runs that failed."""

    def get(self, request: Request) -> Response:
        params = _validated(MinutesQuerySerializer, request)
        now = timezone.now()
        start = now - rollups.ONE_MINUTE * params["minutes"]
        stats = rollups.window_stats(start, now, rollups.Scope(graph=params.get("graph")))
        rate = stats["error_rate"]
        return Response(
            {
                "graph": params.get("graph"),
                "minutes": params["minutes"],
                "runs": stats["runs"],
                "errors": stats["errors"],
                "error_rate_percent": 0.0 if rate is None else rate * 100,
            }
        )


class AverageDurationView(APIView):
    """The seed's ``get_average_execution_time(node_name, minutes)`` in milliseconds."""

    def get(self, request: Request) -> Response:
        params = _validated(MinutesQuerySerializer, request)
        if not params.get("node"):
            raise ValidationError({"node": ["This field is required."]})
        now = timezone.now()
        start = now - rollups.ONE_MINUTE * params["minutes"]
        scope = rollups.Scope(graph=params.get("graph"), node=params["node"])
        stats = rollups.window_stats(start, now, scope)
        return Response(
            {
                "graph": params.get("graph"),
                "node": params["node"],
                "minutes": params["minutes"],
                "runs": stats["runs"],
                "average_duration_ms": stats["latency_ms"]["avg"],
            }
        )


class NewestRunsFirst(CursorPagination):
    ordering = ("-started_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 1000


class GraphRunViewSet(viewsets.ReadOnlyModelViewSet[GraphRun]):
    """Raw graph runs, newest first, with their node runs.

    Filters: ``graph``, ``status``, ``user_id``, ``session_id``, ``version``, ``since``, ``until``.
    """

    serializer_class = GraphRunSerializer
    lookup_field = "run_id"
    pagination_class = NewestRunsFirst

    _filters = {
        "graph": "graph__name",
        "user_id": "user_id",
        "session_id": "session_id",
        "version": "version",
    }

    def get_queryset(self) -> QuerySet[GraphRun]:
        queryset = GraphRun.objects.select_related("graph").prefetch_related("node_runs")
        params = self.request.query_params
        for param, lookup in self._filters.items():
            if params.get(param):
                queryset = queryset.filter(**{lookup: params[param]})
        bounds = RunFilterSerializer(data=params)
        bounds.is_valid(raise_exception=True)
        if "status" in bounds.validated_data:
            queryset = queryset.filter(status=bounds.validated_data["status"])
        if "since" in bounds.validated_data:
            queryset = queryset.filter(started_at__gte=bounds.validated_data["since"])
        if "until" in bounds.validated_data:
            queryset = queryset.filter(started_at__lt=bounds.validated_data["until"])
        return queryset
