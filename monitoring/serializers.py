"""Validation of query parameters and shaping of read responses."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from rest_framework import serializers

from .models import Alert, GraphRun, NodeRun, RunStatus, Severity
from .rollups import STEPS, Scope

_WINDOW = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_WINDOW = timedelta(days=400)
MAX_SERIES_POINTS = 1500


def parse_window(text: str) -> timedelta:
    """'10m', '1h', '24h', '7d' and so on; raises ValueError on anything else."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(text)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class WindowQuerySerializer(serializers.Serializer[Any]):
    """``window`` (ending now) or ``start``/``end``; optional ``graph`` and ``node``.

    ``context["now"]`` is the request's clock reading. ``validated_data`` gains ``scope``.
    """

    default_window = "1h"

    graph = serializers.CharField(
        required=False, max_length=200, help_text="One graph (default: every graph)."
    )
    node = serializers.CharField(
        required=False, max_length=200, help_text="One node's runs instead of graph runs."
    )
    window = serializers.CharField(
        required=False,
        max_length=16,
        help_text="The window ending now: a number and a unit (s, m, h, d, w), e.g. 10m, 24h, "
        "7d. Default 1h (7d for analytics). Not with start/end.",
    )
    start = serializers.DateTimeField(required=False, help_text="Start of the window (ISO 8601).")
    end = serializers.DateTimeField(
        required=False, help_text="End of the window (ISO 8601, default now)."
    )

    def validate_window(self, value: str) -> timedelta:
        try:
            window = parse_window(value)
        except ValueError as exc:
            raise serializers.ValidationError(
                "Use a number and a unit (s, m, h, d, w), e.g. 10m, 24h, 7d."
            ) from exc
        if not timedelta(0) < window <= MAX_WINDOW:
            raise serializers.ValidationError("Must be longer than 0 and at most 400 days.")
        return window

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        now: datetime = self.context["now"]
        if "window" in attrs and ("start" in attrs or "end" in attrs):
            raise serializers.ValidationError({"window": ["Give either window or start/end."]})
        end = attrs.get("end", now)
        if "start" in attrs:
            start = attrs["start"]
        else:
            start = end - attrs.get("window", parse_window(self.default_window))
        if start >= end:
            raise serializers.ValidationError({"start": ["Must be before end."]})
        if end - start > MAX_WINDOW:
            raise serializers.ValidationError({"start": ["The window is longer than 400 days."]})
        attrs["start"], attrs["end"] = start, end
        attrs["scope"] = Scope(graph=attrs.get("graph"), node=attrs.get("node"))
        return attrs


class SeriesQuerySerializer(WindowQuerySerializer):
    step = serializers.ChoiceField(choices=sorted(STEPS), default="5m")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        attrs["step"] = STEPS[attrs["step"]]
        points = (attrs["end"] - attrs["start"]) / attrs["step"]
        if points > MAX_SERIES_POINTS:
            message = f"Gives {points:.0f} points, at most {MAX_SERIES_POINTS}: use a longer step."
            raise serializers.ValidationError({"step": [message]})
        return attrs


class MinutesQuerySerializer(serializers.Serializer[Any]):
    """The seed's ``minutes=60`` look-back, for the error-rate and average-duration endpoints."""

    graph = serializers.CharField(
        required=False, max_length=200, help_text="One graph (default: every graph)."
    )
    node = serializers.CharField(required=False, max_length=200)
    minutes = serializers.IntegerField(
        default=60, min_value=1, max_value=400 * 24 * 60, help_text="The look-back in minutes."
    )


class RunFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class _ExportFilterSerializer(RunFilterSerializer):
    """The run list's filters, for the CSV exports; empty ones are ignored."""

    graph = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="The graph's name."
    )
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    session_id = serializers.CharField(required=False, allow_blank=True, max_length=255)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        fields["status"].help_text = "Only this status."
        fields["since"].help_text = "Started at or after this time (ISO 8601)."
        fields["until"].help_text = "Started before this time (ISO 8601)."
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


class RunExportFilterSerializer(_ExportFilterSerializer):
    """Filters of the graph run CSV export."""

    version = serializers.CharField(required=False, allow_blank=True, max_length=64)


class NodeRunExportFilterSerializer(_ExportFilterSerializer):
    """Filters of the node run CSV export: ``status``, ``since`` and ``until`` are the node
    run's, ``graph``, ``user_id`` and ``session_id`` its graph run's."""

    node = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="The node's name."
    )


class NodeRunSerializer(serializers.ModelSerializer[NodeRun]):
    class Meta:
        model = NodeRun
        fields = ["run_id", "node", "status", "started_at", "duration_ms", "attempt", "error"]


class GraphRunSerializer(serializers.ModelSerializer[GraphRun]):
    graph = serializers.CharField(source="graph.name")
    node_runs = NodeRunSerializer(many=True, read_only=True)

    class Meta:
        model = GraphRun
        fields = [
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
            "metadata",
            "received_at",
            "node_runs",
        ]


# --- Alerts ------------------------------------------------------------------------------------

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def _choices(values: list[str], allowed: list[str], what: str) -> list[str]:
    """A repeatable parameter that may also be a comma list: ``state=firing,pending``."""
    chosen = [piece.strip() for value in values for piece in value.split(",") if piece.strip()]
    unknown = [value for value in chosen if value not in allowed]
    if unknown:
        raise serializers.ValidationError(
            f"Unknown {what} {', '.join(map(repr, unknown))}: use {', '.join(allowed)}."
        )
    return list(dict.fromkeys(chosen))


class AlertFilterSerializer(serializers.Serializer[Any]):
    """Query parameters of the alert list. ``state`` and ``severity`` repeat or take a comma
    list; every ``label=key=value`` must match (a missing label counts as empty, as in
    silences)."""

    state = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=200), required=False
    )
    severity = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=200), required=False
    )
    rule = serializers.CharField(required=False, max_length=200)
    fingerprint = serializers.CharField(required=False, max_length=200)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Declared here: a class attribute named "label" would shadow Field.label.
        fields["label"] = serializers.ListField(
            child=serializers.CharField(allow_blank=True, max_length=1000), required=False
        )
        return fields

    def validate_state(self, value: list[str]) -> list[str]:
        return _choices(value, list(Alert.State.values), "state")

    def validate_severity(self, value: list[str]) -> list[str]:
        return _choices(value, list(Severity.values), "severity")

    def validate_label(self, value: list[str]) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        for text in value:
            name, equals, wanted = text.partition("=")
            if not equals or not name.strip():
                raise serializers.ValidationError(
                    f"{text!r} is not key=value, e.g. label=graph=support-bot."
                )
            pairs.append((name.strip(), wanted))
        return pairs

    def validate_fingerprint(self, value: str) -> str:
        value = value.strip().lower()
        if not _FINGERPRINT.match(value):
            raise serializers.ValidationError("A fingerprint is 64 hexadecimal characters.")
        return value


class AlertSerializer(serializers.ModelSerializer[Alert]):
    rule = serializers.CharField(source="rule.name", read_only=True)
    severity = serializers.CharField(source="rule.severity", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "fingerprint",
            "rule",
            "severity",
            "state",
            "labels",
            "value",
            "episode",
            "active_at",
            "fired_at",
            "resolved_at",
            "resolved_by",
            "last_evaluated_at",
            "acknowledged_at",
            "acknowledged_by",
            "flapping",
        ]
        read_only_fields = fields
