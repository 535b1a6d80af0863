from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
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
