"""Validation of query parameters and shaping of read responses."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from rest_framework import serializers

from .models import GraphRun, NodeRun, RunStatus
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

    graph = serializers.CharField(required=False, max_length=200)
    node = serializers.CharField(required=False, max_length=200)
    window = serializers.CharField(required=False, max_length=16)
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)

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

    graph = serializers.CharField(required=False, max_length=200)
    node = serializers.CharField(required=False, max_length=200)
    minutes = serializers.IntegerField(default=60, min_value=1, max_value=400 * 24 * 60)


class RunFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


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
