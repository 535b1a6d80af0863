from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import alerting, csv_export, ingest, rollups
from .auth import IngestScope, ManageScope, ReadScope, actor
from .models import Alert, GraphRun, NodeRun
from .openapi import (
    AUTH_ERRORS,
    BAD_REQUEST,
    CONFLICT,
    CSV_FILE,
    INGEST_REJECTED,
    NOT_FOUND,
    AverageDurationSerializer,
    ErrorDetailSerializer,
    ErrorRateSerializer,
    GroupedStatsSerializer,
    IngestBatchSerializer,
    IngestResultSerializer,
    SeriesSerializer,
    StatsSerializer,
)
from .serializers import (
    AlertFilterSerializer,
    AlertSerializer,
    GraphRunSerializer,
    MinutesQuerySerializer,
    NodeRunExportFilterSerializer,
    RunExportFilterSerializer,
    RunFilterSerializer,
    SeriesQuerySerializer,
    WindowQuerySerializer,
)


@extend_schema_view(
    post=extend_schema(
        tags=["ingest"],
        summary="Send a batch of graph runs and metric points",
        request={"application/json": IngestBatchSerializer},
        responses={
            200: OpenApiResponse(
                IngestResultSerializer, description="Every item was created or a duplicate."
            ),
            207: OpenApiResponse(
                IngestResultSerializer, description="Some items were rejected, others stored."
            ),
            400: INGEST_REJECTED,
            **AUTH_ERRORS,
            413: OpenApiResponse(
                ErrorDetailSerializer, description="The body or a list is past the limits."
            ),
            415: OpenApiResponse(
                ErrorDetailSerializer, description="A Content-Encoding other than gzip."
            ),
        },
    )
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


@extend_schema_view(
    get=extend_schema(
        tags=["stats"],
        summary="Statistics of a window",
        parameters=[WindowQuerySerializer],
        responses={200: StatsSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    )
)
class StatsView(APIView):
    """Run count, error rate and latency percentiles for one graph, one node or everything.

    Without ``node`` it describes graph runs; with ``node`` that node's runs (in one graph
    when ``graph`` is given, else in every graph).
    """

    def get(self, request: Request) -> Response:
        params = _validated(WindowQuerySerializer, request)
        stats = rollups.window_stats(params["start"], params["end"], params["scope"])
        return Response({**_window_echo(params), **stats})


@extend_schema_view(
    get=extend_schema(
        tags=["stats"],
        summary="Statistics per graph",
        parameters=[WindowQuerySerializer, OpenApiParameter("node", exclude=True)],
        responses={200: GroupedStatsSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    )
)
class GraphStatsView(APIView):
    """The same statistics per graph, for every graph with runs in the window."""

    def get(self, request: Request) -> Response:
        params = _validated(WindowQuerySerializer, request)
        scope = rollups.Scope(graph=params.get("graph"))
        rows = rollups.grouped_window_stats(params["start"], params["end"], scope)
        return Response({"start": params["start"], "end": params["end"], "results": rows})


@extend_schema_view(
    get=extend_schema(
        tags=["stats"],
        summary="Statistics per graph and node",
        parameters=[WindowQuerySerializer, OpenApiParameter("node", exclude=True)],
        responses={200: GroupedStatsSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    )
)
class NodeStatsView(APIView):
    """The same statistics per graph × node, slowest p95 first."""

    def get(self, request: Request) -> Response:
        params = _validated(WindowQuerySerializer, request)
        scope = rollups.Scope(graph=params.get("graph"), node=rollups.Scope.ALL_NODES)
        rows = rollups.grouped_window_stats(params["start"], params["end"], scope)
        rows.sort(key=lambda row: -(row["latency_ms"]["p95"] or 0.0))
        return Response({"start": params["start"], "end": params["end"], "results": rows})


@extend_schema_view(
    get=extend_schema(
        tags=["stats"],
        summary="Statistics over time",
        parameters=[SeriesQuerySerializer],
        responses={200: SeriesSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    )
)
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


@extend_schema_view(
    get=extend_schema(
        tags=["stats"],
        summary="Percent of graph runs that failed",
        parameters=[MinutesQuerySerializer, OpenApiParameter("node", exclude=True)],
        responses={200: ErrorRateSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    )
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


@extend_schema_view(
    get=extend_schema(
        tags=["stats"],
        summary="Average duration of a node",
        parameters=[
            MinutesQuerySerializer,
            OpenApiParameter("node", str, required=True, description="The node's name."),
        ],
        responses={200: AverageDurationSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    )
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


@extend_schema_view(
    list=extend_schema(
        tags=["runs"],
        summary="List graph runs",
        parameters=[
            OpenApiParameter("graph", str, description="The graph's name."),
            OpenApiParameter("user_id", str),
            OpenApiParameter("session_id", str),
            OpenApiParameter("version", str),
            RunFilterSerializer,
        ],
        responses={200: GraphRunSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["runs"],
        summary="Read a graph run",
        parameters=[OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: GraphRunSerializer, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
)
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


# --- CSV export --------------------------------------------------------------------------------


class FirstRenderer(BaseContentNegotiation):
    """Ignores ``Accept`` and ``?format=``: the exports answer CSV, and their errors JSON."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class _ExportView(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FirstRenderer


@extend_schema_view(
    get=extend_schema(
        tags=["export"],
        summary="Graph runs as CSV",
        parameters=[RunExportFilterSerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="A header row and one row per graph run, newest first: "
                + ", ".join(csv_export.RUN_COLUMNS)
                + " (the number of node runs). "
                + CSV_FILE,
            ),
            400: BAD_REQUEST,
            **AUTH_ERRORS,
        },
    )
)
class RunsExportView(_ExportView):
    """``GET /api/v1/export/runs.csv``: the graph runs matching the filters, streamed."""

    def get(self, request: Request) -> StreamingHttpResponse:
        filters = RunExportFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = csv_export.filter_runs(GraphRun.objects.all(), filters.validated_data)
        return csv_export.runs_response(queryset)


@extend_schema_view(
    get=extend_schema(
        tags=["export"],
        summary="Node runs as CSV",
        parameters=[NodeRunExportFilterSerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="A header row and one row per node run, newest first: "
                + ", ".join(csv_export.NODE_RUN_COLUMNS)
                + " (graph_run_id is the graph run's run_id). "
                + CSV_FILE,
            ),
            400: BAD_REQUEST,
            **AUTH_ERRORS,
        },
    )
)
class NodeRunsExportView(_ExportView):
    """``GET /api/v1/export/node-runs.csv``: the node runs matching the filters, streamed."""

    def get(self, request: Request) -> StreamingHttpResponse:
        filters = NodeRunExportFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = csv_export.filter_node_runs(NodeRun.objects.all(), filters.validated_data)
        return csv_export.node_runs_response(queryset)


# --- Alerts ------------------------------------------------------------------------------------


class NewestAlertsFirst(CursorPagination):
    """Most recently created alert first (``active_at`` and ``fired_at`` can be empty, which a
    cursor cannot order by)."""

    ordering = ("-id",)
    page_size_query_param = "page_size"
    max_page_size = 1000


ALERT_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The alert's id.")


@extend_schema_view(
    list=extend_schema(
        tags=["alerts"],
        summary="List alerts",
        parameters=[AlertFilterSerializer],
        responses={200: AlertSerializer(many=True), 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["alerts"],
        summary="Read an alert",
        parameters=[ALERT_ID],
        responses={200: AlertSerializer, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
    resolve=extend_schema(
        tags=["alerts"],
        summary="Resolve an alert",
        parameters=[ALERT_ID],
        description="Needs the manage scope. Answers the alert as it is afterwards.",
        request=None,
        responses={200: AlertSerializer, **AUTH_ERRORS, 404: NOT_FOUND, 409: CONFLICT},
    ),
    acknowledge=extend_schema(
        tags=["alerts"],
        summary="Acknowledge an alert",
        parameters=[ALERT_ID],
        description="Needs the manage scope. Answers the alert as it is afterwards.",
        request=None,
        responses={200: AlertSerializer, **AUTH_ERRORS, 404: NOT_FOUND, 409: CONFLICT},
    ),
)
class AlertViewSet(viewsets.ReadOnlyModelViewSet[Alert]):
    """Alerts, newest first, and the two things people do to them.

    List filters: ``state`` and ``severity`` (repeat them or give a comma list), ``rule`` (the
    rule's name), ``label=key=value`` (repeatable; all must match), ``fingerprint``.
    ``POST <id>/resolve/`` and ``POST <id>/acknowledge/`` take the manage scope and answer the
    alert as it is afterwards, or 409 when the alert is not open.
    """

    serializer_class = AlertSerializer
    pagination_class = NewestAlertsFirst
    permission_classes = [ReadScope]
    manage_permissions = {
        "resolve": "monitoring.change_alert",
        "acknowledge": "monitoring.change_alert",
    }
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Alert]:
        queryset = Alert.objects.select_related("rule")
        if self.action != "list":
            return queryset
        filters = AlertFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        if params.get("state"):
            queryset = queryset.filter(state__in=params["state"])
        if params.get("severity"):
            queryset = queryset.filter(rule__severity__in=params["severity"])
        if "rule" in params:
            queryset = queryset.filter(rule__name=params["rule"])
        if "fingerprint" in params:
            queryset = queryset.filter(fingerprint=params["fingerprint"])
        if params.get("label"):
            # Matched here rather than with JSON key lookups, which treat keys such as "0"
            # as array indexes and differ between SQLite and PostgreSQL. Alerts are few (one
            # per rule and label set), and the semantics are the silences' own.
            matchers = [
                {"label": name, "op": "=", "value": value} for name, value in params["label"]
            ]
            ids = [
                alert_id
                for alert_id, labels in queryset.values_list("id", "labels")
                if isinstance(labels, dict)
                and alerting.matches(matchers, {str(k): str(v) for k, v in labels.items()})
            ]
            queryset = queryset.filter(id__in=ids)
        return queryset

    def _current(self, alert_id: int) -> Alert:
        alert = self.get_queryset().filter(id=alert_id).first()
        if alert is None:
            raise NotFound()
        return alert

    @action(detail=True, methods=["post"], permission_classes=[ManageScope])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        alert = self.get_object()
        try:
            resolved = alerting.resolve(alert.id, by=actor(request), now=timezone.now())
        except Alert.DoesNotExist as exc:  # deleted in the meantime
            raise NotFound() from exc
        alert = self._current(alert.id)
        if not resolved:
            detail = (
                f"Alert {alert.id} is not open (its state is {alert.state}): nothing to resolve."
            )
            return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(alert).data)

    @action(detail=True, methods=["post"], permission_classes=[ManageScope])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        alert = self.get_object()
        acknowledged = alerting.acknowledge(alert.id, by=actor(request), now=timezone.now())
        alert = self._current(alert.id)
        if not acknowledged:
            if alert.state == Alert.State.INACTIVE:
                detail = (
                    f"Alert {alert.id} is not open (its state is {alert.state}): "
                    "nothing to acknowledge."
                )
            else:
                by = f" by {alert.acknowledged_by}" if alert.acknowledged_by else ""
                moment = alert.acknowledged_at.isoformat() if alert.acknowledged_at else "earlier"
                detail = f"Alert {alert.id} was acknowledged already{by} at {moment}."
            return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(alert).data)
