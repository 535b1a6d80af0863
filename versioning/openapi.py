"""Serializers that only describe the versioning responses in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Experiment


class VersionDiffSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField()
    to = serializers.IntegerField(help_text="This version.")
    changes = serializers.DictField(
        help_text="Per section (nodes, edges, branches, joins, state, config): the items "
        "added, removed and changed."
    )

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        # "from" is a keyword, so it cannot be a class attribute.
        fields["from"] = serializers.IntegerField(
            allow_null=True, help_text="The version compared against; null for none."
        )
        return fields


class ResolutionSerializer(serializers.Serializer[Any]):
    graph = serializers.CharField()
    version = serializers.IntegerField()
    content_hash = serializers.CharField()
    experiment = serializers.CharField(allow_null=True, help_text="The running experiment's key.")
    variant = serializers.CharField(allow_null=True, help_text="The unit's variant in it.")


class RecordedSerializer(serializers.Serializer[Any]):
    recorded = serializers.UUIDField(help_text="The run id the outcome was stored as.")


class LatencySummarySerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class VariantResultSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    version = serializers.IntegerField()
    weight = serializers.FloatField()
    assigned_units = serializers.IntegerField()
    units = serializers.IntegerField()
    runs = serializers.IntegerField(help_text="Runs of its units: what the rates divide.")
    anonymous_runs = serializers.IntegerField(help_text="Runs without user or session.")
    success_rate = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True)
    latency_ms = LatencySummarySerializer()


def _interval(allow_null: bool = False) -> serializers.ListField:
    """A confidence interval: ``[low, high]``."""
    return serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        min_length=2,
        max_length=2,
        allow_null=allow_null,
    )


class MetricComparisonSerializer(serializers.Serializer[Any]):
    method = serializers.ChoiceField(choices=["welch", "delta_ratio", "percentile"])
    control_n = serializers.IntegerField()
    treatment_n = serializers.IntegerField()
    control_mean = serializers.FloatField(allow_null=True)
    treatment_mean = serializers.FloatField(allow_null=True)
    difference = serializers.FloatField(allow_null=True)
    standard_error = serializers.FloatField(allow_null=True)
    difference_ci = _interval()
    relative_lift = serializers.FloatField(allow_null=True)
    relative_lift_ci = _interval(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    sequential_p_value = serializers.FloatField(allow_null=True)
    sequential_ci = _interval()
    tau = serializers.FloatField(allow_null=True)
    alpha = serializers.FloatField()
    significant = serializers.BooleanField()
    verdict = serializers.ChoiceField(choices=["collecting", "better", "worse", "inconclusive"])
    guardrail_breached = serializers.BooleanField()


class VariantComparisonSerializer(serializers.Serializer[Any]):
    variant = serializers.CharField()
    against = serializers.CharField(help_text="The control.")
    success_rate = MetricComparisonSerializer()
    error_rate = MetricComparisonSerializer()
    latency_mean_ms = MetricComparisonSerializer()
    latency_p95_ms = MetricComparisonSerializer()


class SampleRatioMismatchSerializer(serializers.Serializer[Any]):
    statistic = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    flagged = serializers.BooleanField()


class ExperimentResultsSerializer(serializers.Serializer[Any]):
    experiment = serializers.CharField()
    graph = serializers.CharField()
    status = serializers.ChoiceField(choices=Experiment.Status.choices)
    started_at = serializers.DateTimeField(allow_null=True, required=False)
    ended_at = serializers.DateTimeField(allow_null=True, required=False)
    min_units = serializers.IntegerField(required=False)
    variants = VariantResultSerializer(many=True)
    comparisons = VariantComparisonSerializer(many=True, help_text="Each treatment vs control.")
    sample_ratio_mismatch = SampleRatioMismatchSerializer(allow_null=True)
    sequential = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        help_text="Running sequential p-values by ``<variant>:<metric>``.",
    )
