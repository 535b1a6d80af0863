from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from .models import Graph, GraphVersion, VersionEvent


class GraphSerializer(serializers.ModelSerializer[Graph]):
    class Meta:
        model = Graph
        fields = ["name", "description", "created_at"]


class GraphVersionSerializer(serializers.ModelSerializer[GraphVersion]):
    graph = serializers.CharField(source="graph.name", read_only=True)

    class Meta:
        model = GraphVersion
        fields = [
            "graph",
            "number",
            "content_hash",
            "description",
            "source",
            "created_by",
            "created_at",
            "is_active",
        ]
        read_only_fields = fields


class GraphVersionDetailSerializer(GraphVersionSerializer):
    class Meta(GraphVersionSerializer.Meta):
        fields = [*GraphVersionSerializer.Meta.fields, "definition"]
        read_only_fields = fields


class RegisterVersionSerializer(serializers.Serializer[Any]):
    definition = serializers.DictField(
        help_text="The graph's definition (the SDK's graph_definition), canonicalised here."
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # Declared here: a class attribute named "source" would shadow Field.source.
        fields["source"] = serializers.CharField(required=False, allow_blank=True, max_length=100)
        return fields

    def validate_definition(self, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise serializers.ValidationError("A definition cannot be empty.")
        if not isinstance(value.get("nodes", []), list):
            raise serializers.ValidationError("'nodes' must be a list.")
        if len(json.dumps(value)) > 1_000_000:
            raise serializers.ValidationError("A definition is limited to 1 MB of JSON.")
        return value


class ReasonSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class VersionEventSerializer(serializers.ModelSerializer[VersionEvent]):
    graph = serializers.CharField(source="graph.name", read_only=True)
    from_version = serializers.IntegerField(
        source="from_version.number", read_only=True, allow_null=True, default=None
    )
    to_version = serializers.IntegerField(source="to_version.number", read_only=True)

    class Meta:
        model = VersionEvent
        fields = [
            "id",
            "graph",
            "action",
            "from_version",
            "to_version",
            "reason",
            "actor",
            "created_at",
        ]
        read_only_fields = fields


class ResolveQuerySerializer(serializers.Serializer[Any]):
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    session_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
