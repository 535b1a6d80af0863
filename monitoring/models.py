from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from versioning.models import Graph


class RunStatus(models.TextChoices):
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


class GraphRunQuerySet(models.QuerySet["GraphRun"]):
    def in_window(self, start: datetime, end: datetime) -> GraphRunQuerySet:
        return self.filter(started_at__gte=start, started_at__lt=end)

    def older_than(self, cutoff: datetime) -> GraphRunQuerySet:
        return self.filter(started_at__lt=cutoff)


class GraphRun(models.Model):
    """One run of a graph, as reported by the SDK. ``run_id`` is the client's, so ingest is
    idempotent: a retried batch finds its runs already stored."""

    run_id = models.UUIDField(unique=True)
    parent_run_id = models.UUIDField(null=True, blank=True)
    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="runs", db_index=False)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    user_id = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    version = models.CharField(max_length=64, blank=True)
    experiment = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    objects = GraphRunQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["graph", "started_at"], name="graphrun_graph_started"),
            models.Index(fields=["user_id", "started_at"], name="graphrun_user_started"),
            models.Index(fields=["started_at"], name="graphrun_started"),
        ]

    def __str__(self) -> str:
        return f"{self.graph_id}:{self.run_id}"


class NodeRun(models.Model):
    """One node execution inside a graph run; ``attempt`` counts retries from 1."""

    graph_run = models.ForeignKey(GraphRun, on_delete=models.CASCADE, related_name="node_runs")
    run_id = models.UUIDField(null=True, blank=True)
    node = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    attempt = models.PositiveIntegerField(default=1)
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.node} ({self.status})"


class MetricPoint(models.Model):
    """A sample of a system or custom metric."""

    name = models.CharField(max_length=200)
    timestamp = models.DateTimeField()
    value = models.FloatField()
    labels = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["name", "timestamp"], name="metricpoint_name_time"),
            models.Index(fields=["timestamp"], name="metricpoint_time"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value} @ {self.timestamp:%Y-%m-%d %H:%M:%S}"


class RunRollup(models.Model):
    """Counts and a latency histogram for the runs of one bucket × graph × node × status.

    ``node`` is empty for the graph runs themselves. Ingest adds to these rows in the same
    transaction as the raw rows, so window statistics read a few buckets, never raw runs.
    """

    bucket_start = models.DateTimeField()
    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="+", db_index=False)
    node = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    count = models.BigIntegerField()
    duration_sum_ms = models.FloatField()
    duration_min_ms = models.FloatField()
    duration_max_ms = models.FloatField()
    # Dense log-spaced latency histogram, see monitoring.histogram.Histogram.to_bytes.
    histogram = models.BinaryField(default=bytes)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d %H:%M} {self.node or '(graph)'} {self.status}"


class MinuteRollup(RunRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bucket_start", "graph", "node", "status"], name="minuterollup_key"
            )
        ]


class HourRollup(RunRollup):
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["bucket_start", "graph", "node", "status"], name="hourrollup_key"
            )
        ]


class RollupDelta(models.Model):
    """What one ingest batch adds to the rollups, waiting for ``rollups.apply_pending``.

    Written in the ingest transaction, claimed and deleted by the rollup task, so ingest
    requests never contend for the hot rollup rows of the current minute.
    """

    created_at = models.DateTimeField(default=timezone.now)
    payload = models.BinaryField()

    def __str__(self) -> str:
        return f"rollup delta {self.id} ({self.created_at:%H:%M:%S})"


class SessionActivity(models.Model):
    """Graph runs per hour × graph × user × session, written by ingest with the rollups.

    Distinct users and sessions over a window read these rows (one per session and hour)
    instead of every run. Runs with neither a user nor a session id are not recorded here.
    """

    bucket_start = models.DateTimeField()
    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="+", db_index=False)
    user_id = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    runs = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "session activity"
        constraints = [
            models.UniqueConstraint(
                fields=["bucket_start", "graph", "user_id", "session_id"],
                name="sessionactivity_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d %H:00} {self.user_id}/{self.session_id}"


class Scope(models.TextChoices):
    INGEST = "ingest"
    READ = "read"
    MANAGE = "manage"


KEY_PREFIX = "lgm_"


def hash_key(raw_key: str) -> str:
    # API keys are 256-bit random strings: a plain SHA-256 is enough, a slow hash buys nothing.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at=None)

    def for_raw_key(self, raw_key: str) -> ApiKey | None:
        """The active key matching a presented secret, or None."""
        if not raw_key.startswith(KEY_PREFIX):
            return None
        return self.active().filter(hashed_key=hash_key(raw_key)).first()


class ApiKey(models.Model):
    """A credential for the API. Only a SHA-256 of the secret is stored; the secret is shown
    once, when the key is created."""

    LAST_USED_RESOLUTION = timedelta(minutes=1)

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def set_new_secret(self) -> str:
        """Give the key a fresh secret and return it; it cannot be read back later."""
        prefix = secrets.token_hex(4)
        raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        self.prefix = prefix
        self.hashed_key = hash_key(raw_key)
        return raw_key

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self, now: datetime | None = None) -> None:
        ApiKey.objects.filter(id=self.id, revoked_at=None).update(revoked_at=now or timezone.now())

    def touch(self, now: datetime) -> None:
        """Record a use, writing at most once per ``LAST_USED_RESOLUTION``."""
        stale = now - self.LAST_USED_RESOLUTION
        if self.last_used_at is None or self.last_used_at < stale:
            ApiKey.objects.filter(id=self.id).filter(
                models.Q(last_used_at=None) | models.Q(last_used_at__lt=stale)
            ).update(last_used_at=now)
            self.last_used_at = now


# --- Alerting (DESIGN sections 5 and 6) --------------------------------------------------------


class Severity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AlertRule(models.Model):
    """A condition over a metric, evaluated on every alerting tick."""

    class Metric(models.TextChoices):
        ERROR_RATE = "error_rate", "error rate"
        LATENCY_AVG = "latency_avg", "latency avg"
        LATENCY_P50 = "latency_p50", "latency p50"
        LATENCY_P95 = "latency_p95", "latency p95"
        LATENCY_P99 = "latency_p99", "latency p99"
        RUN_COUNT = "run_count", "run count"
        SYSTEM_CPU = "system_cpu", "system CPU %"
        SYSTEM_MEMORY = "system_memory", "system memory %"
        CUSTOM = "custom", "custom metric"

    class ScopeKind(models.TextChoices):
        ALL = "all", "all runs"
        GRAPH = "graph", "one graph"
        NODE = "node", "one node"
        EACH_GRAPH = "each_graph", "each graph (one alert per graph)"
        EACH_NODE = "each_node", "each node (one alert per graph and node)"

    class Comparison(models.TextChoices):
        GT = "gt", ">"
        GTE = "gte", "≥"
        LT = "lt", "<"
        LTE = "lte", "≤"

    class NoData(models.TextChoices):
        KEEP = "keep", "keep the state"
        OK = "ok", "treat as OK"
        ALERTING = "alerting", "treat as alerting"

    class Health(models.TextChoices):
        UNKNOWN = "unknown"
        OK = "ok"
        ERROR = "error"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    custom_metric = models.CharField(
        max_length=200, blank=True, help_text="The metric point name, for a custom metric."
    )
    scope = models.CharField(max_length=16, choices=ScopeKind.choices, default=ScopeKind.ALL)
    graph = models.CharField(max_length=200, blank=True, help_text="For one graph or one node.")
    node = models.CharField(max_length=200, blank=True, help_text="For one node.")
    window = models.DurationField(default=timedelta(minutes=10))
    comparison = models.CharField(max_length=4, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField(
        help_text="Error rate as a fraction (0.1 = 10%), latency in ms, CPU and memory in %."
    )
    for_duration = models.DurationField(
        default=timedelta(0), help_text="How long the condition must hold before it fires."
    )
    keep_firing_for = models.DurationField(
        default=timedelta(0), help_text="How long it keeps firing after the condition stops."
    )
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.MEDIUM)
    min_samples = models.PositiveIntegerField(
        default=1, help_text="Fewer runs or points in the window count as no data."
    )
    no_data = models.CharField(max_length=8, choices=NoData.choices, default=NoData.KEEP)
    labels = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    health = models.CharField(
        max_length=8, choices=Health.choices, default=Health.UNKNOWN, editable=False
    )
    last_error = models.TextField(blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    RUN_METRICS = frozenset(
        {"error_rate", "latency_avg", "latency_p50", "latency_p95", "latency_p99", "run_count"}
    )

    def problems(self) -> dict[str, str]:
        """What keeps the rule from being evaluated, per field (empty when it is sound)."""
        found: dict[str, str] = {}
        Kind = self.ScopeKind
        if self.metric not in self.Metric.values:
            found["metric"] = f"Unknown metric {self.metric!r}."
        if self.window is not None and self.window <= timedelta(0):
            found["window"] = "The window must be longer than zero."
        if self.scope == Kind.GRAPH and not self.graph:
            found["graph"] = "A one-graph scope needs the graph's name."
        if self.scope == Kind.NODE and not self.node:
            found["node"] = "A one-node scope needs the node's name."
        if self.metric == self.Metric.CUSTOM and not self.custom_metric:
            found["custom_metric"] = "A custom metric needs the metric point name."
        if self.metric not in self.RUN_METRICS and self.scope in (Kind.EACH_GRAPH, Kind.EACH_NODE):
            found["scope"] = (
                "System and custom metrics give one alert per label set of their points; "
                "'each graph' and 'each node' apply to run metrics only."
            )
        rate = self.threshold if self.metric == self.Metric.ERROR_RATE else None
        if rate is not None and not 0 <= rate <= 1:  # None: the field's own error says it
            found["threshold"] = "An error rate is a fraction between 0 and 1 (0.1 = 10%)."
        if not isinstance(self.labels, dict) or not all(
            isinstance(value, str | int | float) for value in self.labels.values()
        ):
            found["labels"] = 'Labels are a JSON object of names to strings: {"team": "core"}.'
        return found

    def clean(self) -> None:
        problems = self.problems()
        if problems:
            raise ValidationError(problems)


class Alert(models.Model):
    """One rule × one label set, across its episodes; ``fingerprint`` identifies it."""

    class State(models.TextChoices):
        INACTIVE = "inactive"
        PENDING = "pending"
        FIRING = "firing"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    fingerprint = models.CharField(max_length=64, unique=True)
    labels = models.JSONField(default=dict)
    state = models.CharField(max_length=8, choices=State.choices, default=State.INACTIVE)
    episode = models.PositiveIntegerField(default=0)
    active_at = models.DateTimeField(null=True, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    last_held_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    flips = models.JSONField(default=list, blank=True)
    flapping = models.BooleanField(default=False)
    value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "rule"], name="alert_state_rule")]

    def __str__(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.rule.name} {{{labels}}}" if labels else self.rule.name


class AlertTick(models.Model):
    """A claimed evaluation tick: the unique key makes each tick run once across workers."""

    tick_at = models.DateTimeField(unique=True)
    claimed_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"tick {self.tick_at:%Y-%m-%d %H:%M:%S}"


class Silence(models.Model):
    """Alerts whose labels match every matcher send nothing between ``starts_at`` and
    ``ends_at``; they still change state."""

    matchers = models.JSONField(
        help_text='A list of {"label": ..., "op": "=", "!=", "=~" or "!~", "value": ...}.'
    )
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    comment = models.TextField(blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-ends_at"]

    def __str__(self) -> str:
        return f"silence until {self.ends_at:%Y-%m-%d %H:%M}"

    OPS = ("=", "!=", "=~", "!~")

    def clean(self) -> None:
        errors: dict[str, str] = {}
        matchers = self.matchers
        if not isinstance(matchers, list) or not matchers:
            errors["matchers"] = (
                'A non-empty list of matchers: [{"label": "graph", "op": "=", "value": "bot"}].'
            )
        else:
            for index, matcher in enumerate(matchers, 1):
                problem = self._matcher_problem(matcher)
                if problem:
                    errors["matchers"] = f"Matcher {index}: {problem}"
                    break
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "A silence must end after it starts."
        if errors:
            raise ValidationError(errors)

    @classmethod
    def _matcher_problem(cls, matcher: object) -> str:
        if not isinstance(matcher, dict) or set(matcher) - {"label", "op", "value"}:
            return 'an object with "label", "op" and "value".'
        label, op, value = matcher.get("label"), matcher.get("op", "="), matcher.get("value")
        if not isinstance(label, str) or not label or not isinstance(value, str):
            return '"label" and "value" must be strings.'
        if op not in cls.OPS:
            return f'"op" must be one of {", ".join(cls.OPS)}.'
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                return f"invalid regular expression: {exc}."
        return ""


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        SLACK = "slack", "Slack incoming webhook"
        WEBHOOK = "webhook", "Webhook (JSON)"
        EMAIL = "email", "Email"
        PAGERDUTY = "pagerduty", "PagerDuty Events v2"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(
        default=dict, help_text="url (and secret) for webhooks, routing_key for PagerDuty, to."
    )
    min_severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.LOW)
    send_resolved = models.BooleanField(default=True)
    repeat_interval = models.DurationField(null=True, blank=True, default=timedelta(hours=4))
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Notification(models.Model):
    """Outbox: written with the alert's state change, delivered by a Celery task."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="notifications"
    )
    episode = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16)
    message = models.JSONField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} → {self.channel.name}"
