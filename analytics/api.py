from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from monitoring.openapi import AUTH_ERRORS, BAD_REQUEST, CSV_FORMAT, json_or_csv, path_parameter
from monitoring.renderers import CSVTableView
from monitoring.serializers import WindowQuerySerializer

from . import queries
from .openapi import (
    ActiveUsersSerializer,
    NodeUsageListSerializer,
    PopularGraphsSerializer,
    UserAnalyticsSerializer,
)


class AnalyticsQuerySerializer(WindowQuerySerializer):
    """A window (default the last 7 days, or ``days=N`` as in the seed) and a result limit."""

    default_window = "7d"

    days = serializers.IntegerField(
        required=False, min_value=1, max_value=400, help_text="The last N days (as window=Nd)."
    )
    limit = serializers.IntegerField(
        required=False, default=20, min_value=1, max_value=1000, help_text="At most this many rows."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "days" in attrs:
            if {"window", "start"} & attrs.keys():
                raise serializers.ValidationError({"days": ["Give days, window or start/end."]})
            attrs["window"] = self.validate_window(f"{attrs['days']}d")
        return super().validate(attrs)


def _params(request: Request) -> dict[str, Any]:
    serializer = AnalyticsQuerySerializer(
        data=request.query_params, context={"now": timezone.now()}
    )
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _window(params: dict[str, Any]) -> dict[str, Any]:
    return {"start": params["start"], "end": params["end"]}


@extend_schema_view(
    get=extend_schema(
        tags=["analytics"],
        summary="Graphs by number of runs",
        parameters=[
            AnalyticsQuerySerializer,
            CSV_FORMAT,
            OpenApiParameter("graph", exclude=True),
            OpenApiParameter("node", exclude=True),
        ],
        responses=json_or_csv(PopularGraphsSerializer, {400: BAD_REQUEST, **AUTH_ERRORS}),
    )
)
class PopularGraphsView(CSVTableView):
    csv_name = "popular-graphs"
    csv_columns = ("graph", "runs", "errors")

    def get(self, request: Request) -> Response:
        params = _params(request)
        rows = queries.popular_graphs(params["start"], params["end"], params["limit"])
        return Response({**_window(params), "results": rows})


@extend_schema_view(
    get=extend_schema(
        tags=["analytics"],
        summary="Runs and errors per graph and node",
        parameters=[
            AnalyticsQuerySerializer,
            CSV_FORMAT,
            OpenApiParameter("node", exclude=True),
        ],
        responses=json_or_csv(NodeUsageListSerializer, {400: BAD_REQUEST, **AUTH_ERRORS}),
    )
)
class NodeUsageView(CSVTableView):
    csv_name = "node-usage"
    csv_columns = ("graph", "node", "runs", "errors")

    def get(self, request: Request) -> Response:
        params = _params(request)
        rows = queries.node_usage(params["start"], params["end"], params.get("graph"))
        return Response({**_window(params), "results": rows[: params["limit"]]})


@extend_schema_view(
    get=extend_schema(
        tags=["analytics"],
        summary="One user's runs",
        parameters=[
            path_parameter("user_id", str, "The user id the SDK reported."),
            AnalyticsQuerySerializer,
            CSV_FORMAT,
            OpenApiParameter("graph", exclude=True),
            OpenApiParameter("node", exclude=True),
            OpenApiParameter("limit", exclude=True),
        ],
        responses=json_or_csv(UserAnalyticsSerializer, {400: BAD_REQUEST, **AUTH_ERRORS}),
    )
)
class UserAnalyticsView(CSVTableView):
    """As CSV: one row, with a ``runs_per_graph.<graph>`` column per graph."""

    csv_name = "user-analytics"

    def get(self, request: Request, user_id: str) -> Response:
        params = _params(request)
        return Response(
            {**_window(params), **queries.user_analytics(user_id, params["start"], params["end"])}
        )


@extend_schema_view(
    get=extend_schema(
        tags=["analytics"],
        summary="Distinct users and sessions",
        parameters=[
            AnalyticsQuerySerializer,
            CSV_FORMAT,
            OpenApiParameter("node", exclude=True),
            OpenApiParameter("limit", exclude=True),
        ],
        responses=json_or_csv(ActiveUsersSerializer, {400: BAD_REQUEST, **AUTH_ERRORS}),
    )
)
class ActiveUsersView(CSVTableView):
    csv_name = "active-users"

    def get(self, request: Request) -> Response:
        params = _params(request)
        counts = queries.active_users(params["start"], params["end"], params.get("graph"))
        return Response({**_window(params), **counts})
