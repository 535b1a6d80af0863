"""Serializers that only describe the analytics responses in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class WindowSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class GraphUsageSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField()
    runs = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]


class PopularGraphsSerializer(WindowSerializer):
    results = GraphUsageSerializer(many=True, help_text="Most runs first.")


class NodeUsageSerializer(GraphUsageSerializer):
    node = serializers.CharField()


class NodeUsageListSerializer(WindowSerializer):
    results = NodeUsageSerializer(many=True, help_text="Most runs first.")


class UserAnalyticsSerializer(WindowSerializer):
    user_id = serializers.CharField()
    total_runs = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]
    sessions = serializers.IntegerField()
    runs_per_graph = serializers.DictField(
        child=serializers.IntegerField(), help_text="Runs per graph name, most first."
    )
    first_run = serializers.DateTimeField(allow_null=True)
    last_run = serializers.DateTimeField(allow_null=True)


class ActiveUsersSerializer(WindowSerializer):
    graph = serializers.CharField(allow_null=True)
    runs = serializers.IntegerField()
    users = serializers.IntegerField(help_text="Distinct user ids.")
    sessions = serializers.IntegerField(help_text="Distinct session ids.")
