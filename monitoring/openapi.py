"""Serializers that only describe the monitoring API in the OpenAPI schema (request bodies
validated by hand, and responses built as plain dicts), and the error responses every app's
endpoints share."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema_field,
)
from rest_framework import serializers

from .models import RunStatus

# --- errors --------------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()


class FieldErrorsSerializer(serializers.Serializer[Any]):
    """Messages per field (``non_field_errors`` for the whole input); its schema, an object
    of string lists, is given by ``monitoring.schema.FieldErrorsScheme``."""


BAD_REQUEST = OpenApiResponse(FieldErrorsSerializer, description="Invalid parameters or body.")
NOT_FOUND = OpenApiResponse(ErrorDetailSerializer, description="No such object.")
CONFLICT = OpenApiResponse(
    ErrorDetailSerializer, description="The object is not in a state that allows this."
)
AUTH_ERRORS: dict[int, OpenApiResponse] = {
    401: OpenApiResponse(
        ErrorDetailSerializer,
        description="No credentials, or an invalid or revoked API key.",
    ),
    403: OpenApiResponse(
        ErrorDetailSerializer,
        description="The API key lacks the scope this endpoint needs, or the user is not staff.",
    ),
}


def path_parameter(name: str, kind: type[Any], description: str) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.PATH, description=description)


# --- ingest --------------------------------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "date-time"},
            {"type": "number", "description": "Seconds since the epoch."},
        ],
        "description": "ISO 8601 (a naive one is taken as UTC) or seconds since the epoch.",
    }
)
class TimestampField(serializers.Field[Any, Any, Any, Any]):
    pass


class NodeRunInSerializer(serializers.Serializer[Any]):
    run_id = serializers.UUIDField(required=False, allow_null=True)
    node = serializers.CharField(max_length=200)
    status = serializers.ChoiceField(choices=RunStatus.choices)
    started_at = TimestampField()
    duration_ms = serializers.FloatField(min_value=0)
    attempt = serializers.IntegerField(required=False, default=1, min_value=1, max_value=1000)
    error = serializers.CharField(
        required=False, allow_blank=True, help_text="Cut to 10,000 characters."
    )


class GraphRunInSerializer(serializers.Serializer[Any]):
    run_id = serializers.UUIDField(help_text="Identifies the run: a run sent again is a duplicate.")
    parent_run_id = serializers.UUIDField(required=False, allow_null=True)
    graph = serializers.CharField(max_length=200)
    status = serializers.ChoiceField(choices=RunStatus.choices)
    started_at = TimestampField()
    duration_ms = serializers.FloatField(min_value=0)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    session_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    version = serializers.CharField(required=False, allow_blank=True, max_length=64)
    experiment = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="``<experiment>:<variant>``."
    )
    error = serializers.CharField(
        required=False, allow_blank=True, help_text="Cut to 10,000 characters."
    )
    metadata = serializers.DictField(required=False, help_text="At most 16 KB as JSON.")
    node_runs = NodeRunInSerializer(many=True, required=False)


class MetricPointInSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    timestamp = TimestampField()
    value = serializers.FloatField()
    labels = serializers.DictField(child=serializers.CharField(), required=False)


class IngestBatchSerializer(serializers.Serializer[Any]):
    """Either list may be left out, not both. The body may be gzip-compressed
    (``Content-Encoding: gzip``)."""

    graph_runs = GraphRunInSerializer(many=True, required=False)
    metric_points = MetricPointInSerializer(many=True, required=False)


class IngestCountsSerializer(serializers.Serializer[Any]):
    created = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()


class IngestItemSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField(help_text="The item's position in its list.")
    run_id = serializers.UUIDField(required=False, help_text="Graph runs that were not rejected.")
    result = serializers.ChoiceField(choices=["created", "duplicate", "rejected"])
    # Declared fields leave the class (DRF's metaclass), so "errors" does not shadow
    # Serializer.errors at run time; only the type checker sees the clash.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Rejected items: messages per field."
    )


class IngestResultSerializer(serializers.Serializer[Any]):
    summary = IngestCountsSerializer()
    graph_runs = IngestItemSerializer(many=True)
    metric_points = IngestItemSerializer(many=True)


INGEST_REJECTED = OpenApiResponse(
    PolymorphicProxySerializer(
        component_name="IngestRejected",
        serializers=[IngestResultSerializer, ErrorDetailSerializer],
        resource_type_field_name=None,
    ),
    description="Every item was rejected (the per-item results), or the body is unusable.",
)


# --- statistics ----------------------------------------------------------------------------------


class LatencySerializer(serializers.Serializer[Any]):
    avg = serializers.FloatField(allow_null=True)
    min = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class WindowStatsSerializer(serializers.Serializer[Any]):
    runs = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]
    error_rate = serializers.FloatField(allow_null=True, help_text="0 to 1; null without runs.")
    by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text="Runs per status."
    )
    latency_ms = LatencySerializer()


class StatsSerializer(WindowStatsSerializer):
    graph = serializers.CharField(allow_null=True)
    node = serializers.CharField(allow_null=True)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class GroupStatsSerializer(WindowStatsSerializer):
    graph = serializers.CharField()
    node = serializers.CharField(required=False, help_text="Per-node statistics only.")


class GroupedStatsSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    results = GroupStatsSerializer(many=True)


class SeriesPointSerializer(WindowStatsSerializer):
    start = serializers.DateTimeField()


class SeriesSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField(allow_null=True)
    node = serializers.CharField(allow_null=True)
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    step_seconds = serializers.FloatField()
    points = SeriesPointSerializer(many=True)


class ErrorRateSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField(allow_null=True)
    minutes = serializers.IntegerField()
    runs = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]
    error_rate_percent = serializers.FloatField()


class AverageDurationSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField(allow_null=True)
    node = serializers.CharField()
    minutes = serializers.IntegerField()
    runs = serializers.IntegerField()
    average_duration_ms = serializers.FloatField(allow_null=True)


# --- CSV -----------------------------------------------------------------------------------------

CSV_FILE = (
    "Times are ISO 8601 in UTC; text starting with =, +, -, @, a tab or a carriage return has "
    "a ' put in front, so that spreadsheets do not run it as a formula. Sent as an attachment "
    "(lgmon-<table>-<date>.csv)."
)
CSV_TABLE = OpenApiResponse(
    OpenApiTypes.STR,
    description="With format=csv: the table (the results, or the object as one row; nested "
    "objects as outer.inner columns) with a header row. " + CSV_FILE,
)
CSV_FORMAT = OpenApiParameter(
    "format",
    str,
    enum=["json", "csv"],
    description="json (the default) or csv for the table as a CSV file (also Accept: text/csv).",
)


def json_or_csv(ok: Any, errors: dict[int, OpenApiResponse]) -> dict[Any, Any]:
    """Responses of a view that answers JSON or, with ``format=csv``, CSV; errors are JSON."""
    return {
        (200, "application/json"): ok,
        (200, "text/csv"): CSV_TABLE,
        **{(code, "application/json"): response for code, response in errors.items()},
    }
