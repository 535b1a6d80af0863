from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import (
    Alert,
    AlertRule,
    ApiKey,
    GraphRun,
    HourRollup,
    MetricPoint,
    MinuteRollup,
    NodeRun,
    Notification,
    NotificationChannel,
    RollupDelta,
    RunRollup,
    Scope,
    SessionActivity,
    Silence,
)


class ReadOnlyAdminMixin:
    """Telemetry is written by ingest only: the admin shows it and may delete it."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NodeRunInline(ReadOnlyAdminMixin, admin.TabularInline[NodeRun, GraphRun]):
    model = NodeRun
    fields = ("node", "status", "started_at", "duration_ms", "attempt", "error", "run_id")
    readonly_fields = fields
    ordering = ["started_at"]
    extra = 0
    can_delete = False


@admin.register(GraphRun)
class GraphRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[GraphRun]):
    list_display = [
        "run_id",
        "graph",
        "status",
        "started_at",
        "duration_ms",
        "user_id",
        "session_id",
        "version",
    ]
    list_filter = ["status", "graph", "started_at"]
    list_select_related = ["graph"]
    search_fields = ["=run_id", "=user_id", "=session_id", "error"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    inlines = [NodeRunInline]


@admin.register(NodeRun)
class NodeRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[NodeRun]):
    list_display = ["node", "graph_name", "status", "started_at", "duration_ms", "attempt"]
    list_filter = ["status", "graph_run__graph"]
    list_select_related = ["graph_run__graph"]
    search_fields = ["node", "=graph_run__run_id", "error"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    raw_id_fields = ["graph_run"]

    @admin.display(description="graph", ordering="graph_run__graph__name")
    def graph_name(self, obj: NodeRun) -> str:
        return obj.graph_run.graph.name


@admin.register(MetricPoint)
class MetricPointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[MetricPoint]):
    list_display = ["name", "value", "timestamp", "labels"]
    list_filter = ["name"]
    search_fields = ["name"]
    date_hierarchy = "timestamp"
    show_full_result_count = False


class RollupAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[RunRollup]):
    list_display = [
        "bucket_start",
        "graph",
        "node",
        "status",
        "count",
        "average_ms",
        "duration_min_ms",
        "duration_max_ms",
    ]
    list_filter = ["status", "graph"]
    list_select_related = ["graph"]
    search_fields = ["node", "graph__name"]
    date_hierarchy = "bucket_start"
    show_full_result_count = False
    exclude = ["histogram"]

    @admin.display(description="avg ms")
    def average_ms(self, obj: RunRollup) -> str:
        return f"{obj.duration_sum_ms / obj.count:.1f}" if obj.count else "-"


@admin.register(SessionActivity)
class SessionActivityAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[SessionActivity]):
    list_display = ["bucket_start", "graph", "user_id", "session_id", "runs"]
    list_filter = ["graph"]
    list_select_related = ["graph"]
    search_fields = ["=user_id", "=session_id"]
    date_hierarchy = "bucket_start"
    show_full_result_count = False


@admin.register(RollupDelta)
class RollupDeltaAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[RollupDelta]):
    """Batches ingested but not yet folded into the rollups: a long list means the beat
    task or the worker is not running."""

    list_display = ["id", "created_at", "payload_bytes"]
    date_hierarchy = "created_at"
    exclude = ["payload"]

    @admin.display(description="size (bytes)")
    def payload_bytes(self, obj: RollupDelta) -> int:
        return len(obj.payload)


admin.site.register(MinuteRollup, RollupAdmin)
admin.site.register(HourRollup, RollupAdmin)


class ApiKeyForm(forms.ModelForm[ApiKey]):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="ingest: send runs and metrics; read: query APIs; manage: change settings.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """The secret is shown once, in the message after the key is created, and never again."""

    form = ApiKeyForm
    list_display = [
        "name",
        "prefix",
        "scope_list",
        "created_at",
        "created_by",
        "last_used_at",
        "is_active",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    date_hierarchy = "created_at"
    readonly_fields = ["prefix", "created_at", "created_by", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is not None:  # the scopes of an existing key cannot be widened silently
            return [*self.readonly_fields, "scopes"]
        return self.readonly_fields

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None:
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            raw_key = obj.set_new_secret()
            obj.created_by = request.user if request.user.is_authenticated else None
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"API key created: {raw_key} — copy it now, it will not be shown again.",
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)


# --- Alerting ----------------------------------------------------------------------------------


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin[AlertRule]):
    list_display = [
        "name",
        "metric",
        "scope",
        "comparison",
        "threshold",
        "window",
        "severity",
        "enabled",
        "health",
        "last_evaluated_at",
    ]
    list_filter = ["enabled", "severity", "metric", "health"]
    search_fields = ["name", "description", "graph", "node"]
    readonly_fields = ["health", "last_error", "last_evaluated_at", "created_at"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Alert]):
    list_display = [
        "rule",
        "state",
        "severity",
        "labels",
        "value",
        "active_at",
        "fired_at",
        "last_evaluated_at",
        "flapping",
        "acknowledged_at",
    ]
    list_filter = ["state", "rule__severity", "flapping", "rule"]
    list_select_related = ["rule"]
    search_fields = ["rule__name", "fingerprint"]

    @admin.display(ordering="rule__severity")
    def severity(self, alert: Alert) -> str:
        return alert.rule.get_severity_display()


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin[Silence]):
    list_display = ["__str__", "matchers", "starts_at", "ends_at", "created_by", "comment"]
    date_hierarchy = "ends_at"


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin[NotificationChannel]):
    # The config holds webhook URLs, secrets and routing keys: not on the list page.
    list_display = [
        "name",
        "kind",
        "min_severity",
        "send_resolved",
        "repeat_interval",
        "enabled",
        "disabled_reason",
    ]
    list_filter = ["kind", "enabled"]
    readonly_fields = ["disabled_reason"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Notification]):
    list_display = [
        "created_at",
        "kind",
        "channel",
        "alert",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    ]
    list_filter = ["status", "kind", "channel"]
    list_select_related = ["channel", "alert__rule"]
