from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import retention, rollups, system


@shared_task(ignore_result=True)
def prune_raw_data() -> dict[str, int]:
    return retention.prune()


@shared_task(ignore_result=True)
def apply_rollup_deltas() -> int:
    return rollups.apply_pending()


@shared_task(ignore_result=True)
def sample_system_metrics() -> int:
    return len(system.sample(timezone.now()))
