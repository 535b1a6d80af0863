"""Retention: delete raw data and rollups past their age, a small batch per transaction.

Each batch is its own short transaction, so ingest (which inserts new rows and never touches
old ones) is never blocked for long; on SQLite the write lock is released between batches.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from .models import GraphRun, HourRollup, MetricPoint, MinuteRollup, NodeRun, SessionActivity


def _delete_in_batches(
    queryset: models.QuerySet[models.Model],
    batch_size: int,
    before_delete: type[models.Model] | None = None,
) -> int:
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
            if not ids:
                return deleted
            if before_delete is not None:
                # Node runs go first, by their indexed foreign key, so the graph-run delete
                # does not cascade through the ORM row by row.
                before_delete._default_manager.filter(graph_run_id__in=ids).delete()
            queryset.model._default_manager.filter(pk__in=ids).delete()
        deleted += len(ids)


def prune(now: datetime | None = None, batch_size: int | None = None) -> dict[str, int]:
    """Delete raw runs and metric points older than the raw retention, and rollups older
    than theirs (session activity lives as long as minute rollups). Returns how many rows of
    each kind went."""
    now = now or timezone.now()
    batch_size = batch_size or settings.LGMON_PRUNE_BATCH_SIZE
    raw_cutoff = now - timedelta(days=settings.LGMON_RAW_RETENTION_DAYS)
    minute_cutoff = now - timedelta(days=settings.LGMON_MINUTE_ROLLUP_RETENTION_DAYS)
    hour_cutoff = now - timedelta(days=settings.LGMON_HOUR_ROLLUP_RETENTION_DAYS)
    return {
        "graph_runs": _delete_in_batches(
            GraphRun.objects.older_than(raw_cutoff), batch_size, before_delete=NodeRun
        ),
        "metric_points": _delete_in_batches(
            MetricPoint.objects.filter(timestamp__lt=raw_cutoff), batch_size
        ),
        "minute_rollups": _delete_in_batches(
            MinuteRollup.objects.filter(bucket_start__lt=minute_cutoff), batch_size
        ),
        "session_activity": _delete_in_batches(
            SessionActivity.objects.filter(bucket_start__lt=minute_cutoff), batch_size
        ),
        "hour_rollups": _delete_in_batches(
            HourRollup.objects.filter(bucket_start__lt=hour_cutoff), batch_size
        ),
    }
