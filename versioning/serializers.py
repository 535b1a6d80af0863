from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Experiment, Graph, GraphVersion, VersionEvent


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


class VariantSerializer(serializers.Serializer[Any]):
    name = serializers.SlugField(max_length=50)
    version = serializers.IntegerField(min_value=1, help_text="The graph's version number.")
    weight = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)

    def validate_weight(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("A variant's weight must be above 0.")
        return value


class ExperimentSerializer(serializers.ModelSerializer[Experiment]):
    graph = serializers.CharField(source="graph.name")
    variants = serializers.SerializerMethodField()

    class Meta:
        model = Experiment
        fields = [
            "key",
            "graph",
            "hypothesis",
            "status",
            "coverage",
            "min_units",
            "guardrails",
            "variants",
            "started_at",
            "ended_at",
            "stopped_reason",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(VariantSerializer(many=True))
    def get_variants(self, experiment: Experiment) -> list[dict[str, Any]]:
        return [
            {"name": v.name, "version": v.version.number, "weight": v.weight}
            for v in experiment.variants.select_related("version")
        ]


class CreateExperimentSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField(max_length=200)
    key = serializers.SlugField(max_length=100)
    hypothesis = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    coverage = serializers.FloatField(min_value=0.0, max_value=1.0, default=1.0)
    min_units = serializers.IntegerField(min_value=1, default=100)
    guardrails = serializers.BooleanField(default=True)
    variants = VariantSerializer(many=True)

    def validate_key(self, value: str) -> str:
        if Experiment.objects.filter(key=value).exists():
            raise serializers.ValidationError("An experiment with this key exists already.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        variants = attrs["variants"]
        errors: dict[str, Any] = {}
        graph = Graph.objects.filter(name=attrs["graph"]).first()
        if graph is None:
            errors["graph"] = [f"No graph named {attrs['graph']!r}."]
        if len(variants) < 2:
            errors["variants"] = ["At least two variants: the first is the control."]
        elif len({v["name"] for v in variants}) != len(variants):
            errors["variants"] = ["Variant names must differ."]
        elif not 0.99 <= sum(v["weight"] for v in variants) <= 1.01:
            errors["variants"] = ["The weights must add up to 1."]
        elif graph is not None:
            numbers = set(GraphVersion.objects.filter(graph=graph).values_list("number", flat=True))
            missing = sorted({v["version"] for v in variants} - numbers)
            if missing:
                errors["variants"] = [f"{graph.name} has no version {missing[0]}."]
        if errors:
            raise serializers.ValidationError(errors)
        attrs["graph"] = graph
        return attrs


class RecordResultSerializer(serializers.Serializer[Any]):
    """One outcome of an experiment's run that happened outside an instrumented graph."""

    user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    session_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    variant = serializers.SlugField(max_length=50)
    success = serializers.BooleanField()
    duration_ms = serializers.FloatField(min_value=0.0)
    started_at = serializers.DateTimeField(required=False)
    error = serializers.CharField(required=False, allow_blank=True, max_length=10_000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("user_id") and not attrs.get("session_id"):
            raise serializers.ValidationError({"user_id": ["A user_id or a session_id."]})
        return attrs
