from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from versioning.models import Graph

from . import alerting, csv_export
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
    RunStatus,
    Scope,
    SessionActivity,
    Silence,
)
from .roles import READ_PERMISSION


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


def _moment(text: str) -> datetime | None:
    """A date or time from an admin filter parameter (naive ones in the current zone)."""
    try:
        moment = parse_datetime(text)
        if moment is None and (day := parse_date(text)) is not None:
            moment = datetime(day.year, day.month, day.day)
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _hierarchy_bounds(query: QueryDict) -> tuple[datetime, datetime] | None:
    """The year, month or day the date hierarchy (on ``started_at``) narrows the list to."""
    year, month, day = (query.get(f"started_at__{part}", "") for part in ("year", "month", "day"))
    try:
        if not year.isdigit():
            return None
        if not month.isdigit():
            start, end = datetime(int(year), 1, 1), datetime(int(year) + 1, 1, 1)
        elif not day.isdigit():
            start = datetime(int(year), int(month), 1)
            end = (start + timedelta(days=32)).replace(day=1)
        else:
            start = datetime(int(year), int(month), int(day))
            end = start + timedelta(days=1)
    except ValueError:
        return None
    return timezone.make_aware(start), timezone.make_aware(end)


def _csv_link(request: HttpRequest, url_name: str, graph_param: str) -> dict[str, Any]:
    """``csv_export_url`` for the changelist template: the export endpoint with the list's
    graph, status and date filters (the search, if any, is not applied)."""
    if not request.user.has_perm(READ_PERMISSION):
        return {}
    query, params = request.GET, {}
    if query.get("status__exact") in RunStatus.values:
        params["status"] = query["status__exact"]
    graph_id = query.get(graph_param, "")
    if graph_id.isdigit():
        name = Graph.objects.filter(id=int(graph_id)).values_list("name", flat=True).first()
        if name is not None:
            params["graph"] = name
    # The date filter's choice and the date hierarchy's: the narrower bounds of the two.
    since, until = (
        _moment(query.get("started_at__gte", "")),
        _moment(query.get("started_at__lt", "")),
    )
    if (bounds := _hierarchy_bounds(query)) is not None:
        since = max(since, bounds[0]) if since else bounds[0]
        until = min(until, bounds[1]) if until else bounds[1]
    if since:
        params["since"] = csv_export.iso_utc(since)
    if until:
        params["until"] = csv_export.iso_utc(until)
    url = reverse(url_name)
    return {"csv_export_url": f"{url}?{urlencode(params)}" if params else url}


RunModel = TypeVar("RunModel", GraphRun, NodeRun)


class CsvExportAdmin(admin.ModelAdmin[RunModel]):
    """An "Export selected as CSV" action, and a "Download CSV" link on the change list that
    exports the list's current filters through the API's export endpoint."""

    actions = ["export_csv"]
    change_list_template = "admin/monitoring/csv_change_list.html"
    csv_response: Callable[[QuerySet[RunModel]], StreamingHttpResponse]
    csv_url_name: str
    csv_graph_param: str  # the list filter's query parameter for the graph

    @admin.action(description="Export selected as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[RunModel]
    ) -> StreamingHttpResponse:
        return self.csv_response(queryset)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse | TemplateResponse:
        link = _csv_link(request, self.csv_url_name, self.csv_graph_param)
        return super().changelist_view(request, {**(extra_context or {}), **link})


@admin.register(GraphRun)
class GraphRunAdmin(ReadOnlyAdminMixin, CsvExportAdmin[GraphRun]):
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
    csv_response = staticmethod(csv_export.runs_response)
    csv_url_name = "export-runs"
    csv_graph_param = "graph__id__exact"


@admin.register(NodeRun)
class NodeRunAdmin(ReadOnlyAdminMixin, CsvExportAdmin[NodeRun]):
    list_display = ["node", "graph_name", "status", "started_at", "duration_ms", "attempt"]
    list_filter = ["status", "graph_run__graph"]
    list_select_related = ["graph_run__graph"]
    search_fields = ["node", "=graph_run__run_id", "error"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    raw_id_fields = ["graph_run"]
    csv_response = staticmethod(csv_export.node_runs_response)
    csv_url_name = "export-node-runs"
    csv_graph_param = "graph_run__graph__id__exact"

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

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)


# --- Alerting ----------------------------------------------------------------------------------

RECENT_NOTIFICATIONS = 50
"""How many of the latest notifications an alert's or a channel's page shows."""


def _actor(request: HttpRequest) -> str:
    """Who acted, as alerts and silences record it: the signed-in user's username."""
    return request.user.get_username()


def _compact_labels(labels: dict[str, Any], *, skip: dict[str, str] | None = None) -> str:
    """``graph=support-bot, node=answer``; labels equal to ``skip``'s are left out."""
    shown = [
        f"{name}={value}"
        for name, value in sorted(labels.items())
        if not skip or skip.get(name) != value
    ]
    return ", ".join(shown)


def _latest_ids(queryset: QuerySet[Notification]) -> list[int]:
    return list(
        queryset.order_by("-created_at", "-id").values_list("id", flat=True)[:RECENT_NOTIFICATIONS]
    )


class AlertRuleForm(forms.ModelForm[AlertRule]):
    class Meta:
        model = AlertRule
        fields = [
            "name",
            "description",
            "enabled",
            "severity",
            "labels",
            "metric",
            "custom_metric",
            "scope",
            "graph",
            "node",
            "window",
            "comparison",
            "threshold",
            "min_samples",
            "for_duration",
            "keep_firing_for",
            "no_data",
        ]


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin[AlertRule]):
    """Field problems come from ``AlertRule.clean`` (``problems()``) through the form's
    ``full_clean``; the evaluator's own verdict is ``health`` and ``last_error``."""

    form = AlertRuleForm
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
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled", "severity", "labels"]}),
        (
            "Condition",
            {
                "fields": [
                    "metric",
                    "custom_metric",
                    "scope",
                    "graph",
                    "node",
                    "window",
                    "comparison",
                    "threshold",
                    "min_samples",
                ]
            },
        ),
        ("Timing", {"fields": ["for_duration", "keep_firing_for", "no_data"]}),
        ("Health", {"fields": ["health", "last_error", "last_evaluated_at", "created_at"]}),
    ]


class AlertNotificationInline(ReadOnlyAdminMixin, admin.TabularInline[Notification, Alert]):
    """The alert's latest notifications (``RECENT_NOTIFICATIONS``, see ``AlertAdmin``)."""

    model = Notification
    fields = (
        "kind",
        "channel",
        "episode",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
    )
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    can_delete = False
    verbose_name_plural = f"notifications (latest {RECENT_NOTIFICATIONS})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).select_related("channel")


_FIRING_FIRST = Case(
    When(state=Alert.State.FIRING, then=Value(0)),
    When(state=Alert.State.PENDING, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Alert]):
    """Alerts are written by the evaluator; people acknowledge, resolve or silence them."""

    list_display = [
        "state",
        "severity",
        "rule",
        "label_text",
        "started",
        "fired_at",
        "last_evaluated_at",
        "value",
        "acknowledged",
        "flapping",
    ]
    list_filter = ["state", "rule__severity", "flapping", "rule"]
    list_select_related = ["rule"]
    search_fields = ["rule__name", "=fingerprint"]
    ordering = [_FIRING_FIRST.asc(), F("fired_at").desc(nulls_last=True), "-id"]
    inlines = [AlertNotificationInline]
    actions = ["acknowledge", "resolve", "silence_1h", "silence_24h"]

    @admin.display(ordering="rule__severity")
    def severity(self, alert: Alert) -> str:
        return str(alert.rule.get_severity_display())

    @admin.display(description="labels")
    def label_text(self, alert: Alert) -> str:
        # alertname and severity repeat the rule and severity columns.
        return _compact_labels(
            alert.labels, skip={"alertname": alert.rule.name, "severity": alert.rule.severity}
        )

    @admin.display(description="started", ordering="active_at")
    def started(self, alert: Alert) -> Any:
        return alert.active_at

    @admin.display(description="acknowledged", ordering="acknowledged_at")
    def acknowledged(self, alert: Alert) -> str:
        if alert.acknowledged_at is None:
            return ""
        return f"by {alert.acknowledged_by}" if alert.acknowledged_by else "yes"

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Alert, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, AlertNotificationInline) and obj.pk is not None:
            ids = _latest_ids(Notification.objects.filter(alert=obj))
            kwargs["queryset"] = kwargs["queryset"].filter(id__in=ids)
        return kwargs

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Acting on alerts changes them: it takes the change permission, which the admin
        pages themselves never grant (alerts are not edited by hand)."""
        return request.user.has_perm("monitoring.change_alert")

    @admin.action(description="Acknowledge selected alerts", permissions=["act"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        now, by = timezone.now(), _actor(request)
        done = skipped = 0
        for alert_id in queryset.values_list("id", flat=True):
            if alerting.acknowledge(alert_id, by=by, now=now):
                done += 1
            else:
                skipped += 1
        message = f"Acknowledged {done} alert(s)."
        self._report(request, message, done, skipped, "not open or acknowledged already")

    @admin.action(description="Resolve selected alerts", permissions=["act"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        now, by = timezone.now(), _actor(request)
        done = skipped = 0
        for alert_id in queryset.values_list("id", flat=True):
            if alerting.resolve(alert_id, by=by, now=now):
                done += 1
            else:
                skipped += 1
        self._report(request, f"Resolved {done} alert(s).", done, skipped, "not open")

    @admin.action(description="Silence for 1 hour", permissions=["act"])
    def silence_1h(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._silence(request, queryset, timedelta(hours=1), "1 hour")

    @admin.action(description="Silence for 24 hours", permissions=["act"])
    def silence_24h(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._silence(request, queryset, timedelta(hours=24), "24 hours")

    def _silence(
        self, request: HttpRequest, queryset: QuerySet[Alert], duration: timedelta, text: str
    ) -> None:
        now, by = timezone.now(), _actor(request)
        done = skipped = 0
        for alert in queryset.select_related("rule"):
            if not alert.labels:  # no matchers: the silence would match nothing
                skipped += 1
                continue
            alerting.silence_for(alert, duration, by=by, now=now)
            done += 1
        until = timezone.localtime(now + duration)
        message = f"Silenced {done} alert(s) for {text} (until {until:%Y-%m-%d %H:%M %Z})."
        self._report(request, message, done, skipped, "no labels to match")

    def _report(
        self, request: HttpRequest, message: str, done: int, skipped: int, why: str
    ) -> None:
        if skipped:
            message += f" {skipped} skipped: {why}."
        self.message_user(request, message, messages.SUCCESS if done else messages.WARNING)


class SilenceStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active now"), ("upcoming", "upcoming"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(starts_at__lte=now, ends_at__gt=now)
        if self.value() == "upcoming":
            return queryset.filter(starts_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(ends_at__lte=now)
        return queryset


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin[Silence]):
    """Matchers are checked by ``Silence.clean`` (ops, regular expressions, ends after it
    starts); the form shows its errors on the fields."""

    list_display = [
        "__str__",
        "matcher_text",
        "active_now",
        "starts_at",
        "ends_at",
        "created_by",
        "comment",
    ]
    list_filter = [SilenceStateFilter]
    search_fields = ["comment", "created_by"]
    date_hierarchy = "ends_at"
    fields = ["matchers", "starts_at", "ends_at", "comment", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]
    actions = ["end_now"]

    @admin.display(description="matchers")
    def matcher_text(self, silence: Silence) -> str:
        if not isinstance(silence.matchers, list):
            return str(silence.matchers)
        return ", ".join(
            f"{m.get('label')}{m.get('op', '=')}{m.get('value')!r}"
            if isinstance(m, dict)
            else str(m)
            for m in silence.matchers
        )

    @admin.display(boolean=True, description="active now")
    def active_now(self, silence: Silence) -> bool:
        return silence.starts_at <= timezone.now() < silence.ends_at

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = _actor(request)
        super().save_model(request, obj, form, change)

    @admin.action(description="End selected silences now", permissions=["change"])
    def end_now(self, request: HttpRequest, queryset: QuerySet[Silence]) -> None:
        now = timezone.now()
        count = queryset.filter(starts_at__lte=now, ends_at__gt=now).update(ends_at=now)
        self.message_user(request, f"Ended {count} active silence(s).", messages.SUCCESS)


# Notification channels: the config holds secrets (a Slack webhook URL is its token, a webhook
# signing secret, a PagerDuty routing key). The form edits it through per-kind fields; stored
# secrets are never rendered back into the page, and a blank input keeps the stored value.

_ADDRESS_SEPARATORS = re.compile(r"[,;\s]+")
_HTTP_URL = URLValidator(schemes=["http", "https"])
ChannelKind = NotificationChannel.Kind


def _url_hint(url: str) -> str:
    """What of a stored URL may be shown: its scheme and host, not the path that can carry a
    token, nor any user:password part."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…" if parts.scheme and parts.hostname else "set"


def _secret_field(label: str, max_length: int, help_text: str) -> forms.CharField:
    """An input whose stored value is never rendered back into the page."""
    return forms.CharField(
        label=label,
        required=False,
        max_length=max_length,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=help_text,
    )


class NotificationChannelForm(forms.ModelForm[NotificationChannel]):
    url = _secret_field(
        "URL",
        2048,
        "Slack: the incoming webhook URL. Webhook: where to POST the JSON. "
        "PagerDuty: optional, the Events API v2 URL (default events.pagerduty.com).",
    )
    secret = _secret_field(
        "Signing secret",
        500,
        "Webhook only, optional: each body is signed with it (X-Lgmon-Signature: sha256=<HMAC>).",
    )
    routing_key = _secret_field(
        "Routing key", 200, "PagerDuty only: the integration's routing key."
    )
    to = forms.CharField(
        label="Recipients",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Email only: addresses separated by commas or new lines.",
    )
    remove_secret = forms.BooleanField(
        label="Remove the signing secret", required=False, help_text="Webhook: stop signing."
    )
    remove_url = forms.BooleanField(
        label="Remove the URL",
        required=False,
        help_text="PagerDuty: go back to the default Events API URL.",
    )

    SECRET_FIELDS = ("url", "secret", "routing_key")

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "enabled", "min_severity", "send_resolved", "repeat_interval"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        editing = self.instance.pk is not None
        self.stored_kind = self.instance.kind if editing else ""
        stored = self.instance.config if editing else {}
        self.stored: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
        if self.stored_kind == ChannelKind.EMAIL and isinstance(self.stored.get("to"), list):
            self.fields["to"].initial = "\n".join(str(a) for a in self.stored["to"])
        for name in self.SECRET_FIELDS:
            value = self.stored.get(name)
            if value and isinstance(value, str):
                shown = _url_hint(value) if name == "url" else "set"
                self.fields[name].help_text = (
                    f"{self.fields[name].help_text} Stored: {shown}. Leave blank to keep the "
                    "current value (while the kind stays the same)."
                )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if not kind:
            return cleaned  # the kind field has its own error
        # Stored values are kept only for the kind they were entered for: a Slack URL must not
        # silently become a PagerDuty endpoint.
        stored = self.stored if kind == self.stored_kind else {}

        def given_or_stored(name: str) -> str:
            value = cleaned.get(name) or stored.get(name) or ""
            return value if isinstance(value, str) else ""

        config: dict[str, Any] = {}
        if kind in (ChannelKind.SLACK, ChannelKind.WEBHOOK):
            url = given_or_stored("url")
            if not url:
                problem = (
                    "A Slack channel needs its incoming webhook URL."
                    if kind == ChannelKind.SLACK
                    else "A webhook channel needs the URL to POST to."
                )
                self.add_error("url", problem)
            elif self._check_url(url, given=bool(cleaned.get("url"))):
                config["url"] = url
            if kind == ChannelKind.WEBHOOK and not cleaned.get("remove_secret"):
                secret = given_or_stored("secret")
                if secret:
                    config["secret"] = secret
        elif kind == ChannelKind.PAGERDUTY:
            routing_key = given_or_stored("routing_key")
            if not routing_key:
                self.add_error("routing_key", "A PagerDuty channel needs its routing key.")
            config["routing_key"] = routing_key
            url = cleaned.get("url") or ""
            if not url and not cleaned.get("remove_url"):
                url = given_or_stored("url")
            if url and self._check_url(url, given=bool(cleaned.get("url"))):
                config["url"] = url
        elif kind == ChannelKind.EMAIL:
            config["to"] = self._recipients(cleaned.get("to") or "")
        cleaned["config"] = config
        return cleaned

    def _check_url(self, url: str, *, given: bool) -> bool:
        try:
            _HTTP_URL(url)
        except ValidationError:
            # The message must not echo the URL: it may hold a token.
            where = "" if given else " (the stored URL)"
            self.add_error("url", f"Enter a full http:// or https:// URL{where}.")
            return False
        return True

    def _recipients(self, text: str) -> list[str]:
        addresses = list(dict.fromkeys(a for a in _ADDRESS_SEPARATORS.split(text) if a))
        if not addresses:
            self.add_error("to", "An email channel needs at least one recipient.")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                self.add_error("to", f"Not a valid email address: {address!r}.")
        return addresses

    def save(self, commit: bool = True) -> NotificationChannel:
        self.instance.config = self.cleaned_data["config"]
        return super().save(commit)


class DeliveryLogInline(ReadOnlyAdminMixin, admin.TabularInline[Notification, NotificationChannel]):
    """The channel's latest notifications (``RECENT_NOTIFICATIONS``, see the channel admin)."""

    model = Notification
    fields = (
        "created_at",
        "kind",
        "alert",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    )
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    can_delete = False
    verbose_name_plural = f"delivery log (latest {RECENT_NOTIFICATIONS})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).select_related("alert__rule")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin[NotificationChannel]):
    # The config holds webhook URLs, secrets and routing keys: never on the list page, and
    # edited through NotificationChannelForm, which does not render stored secrets.
    form = NotificationChannelForm
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
    search_fields = ["name"]
    readonly_fields = ["disabled_reason"]
    actions = ["send_test_notification"]

    def get_fieldsets(self, request: HttpRequest, obj: NotificationChannel | None = None) -> Any:
        target = ["url", "secret", "routing_key", "to"]
        if obj is not None:
            target += ["remove_secret", "remove_url"]
        status = ["name", "kind", "enabled"] + (["disabled_reason"] if obj is not None else [])
        return [
            (None, {"fields": status}),
            (
                "Where to send",
                {
                    "fields": target,
                    "description": "Fill in the fields for the channel's kind; the others "
                    "are ignored.",
                },
            ),
            ("What to send", {"fields": ["min_severity", "send_resolved", "repeat_interval"]}),
        ]

    def get_inlines(self, request: HttpRequest, obj: NotificationChannel | None) -> Any:
        return [DeliveryLogInline] if obj is not None else []

    def get_formset_kwargs(
        self, request: HttpRequest, obj: NotificationChannel, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, DeliveryLogInline) and obj.pk is not None:
            ids = _latest_ids(Notification.objects.filter(channel=obj))
            kwargs["queryset"] = kwargs["queryset"].filter(id__in=ids)
        return kwargs

    def save_model(
        self, request: HttpRequest, obj: NotificationChannel, form: Any, change: bool
    ) -> None:
        if obj.enabled:  # re-enabled by a person: the reason it was disabled is history
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)

    @admin.action(description="Send test notification", permissions=["change"])
    def send_test_notification(
        self, request: HttpRequest, queryset: QuerySet[NotificationChannel]
    ) -> None:
        for channel in queryset.order_by("name"):
            outcome = alerting.send_test(channel, timezone.now())
            if outcome.status == "sent":
                text = f"{channel.name}: test notification sent ({outcome.detail})."
                self.message_user(request, text, messages.SUCCESS)
            else:
                # Outcome.detail never holds the channel's secrets (transports scrubs them).
                text = f"{channel.name}: test notification failed: {outcome.detail}"
                self.message_user(request, text, messages.ERROR)


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
