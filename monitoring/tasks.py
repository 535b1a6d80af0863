from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import alerting, retention, rollups, system


@shared_task(ignore_result=True)
def prune_raw_data() -> dict[str, int]:
    return retention.prune()


@shared_task(ignore_result=True)
def apply_rollup_deltas() -> int:
    return rollups.apply_pending()


@shared_task(ignore_result=True)
def sample_system_metrics() -> int:
    return len(system.sample(timezone.now()))


@shared_task(ignore_result=True)
def evaluate_alerts() -> dict[str, int] | None:
    """One alerting tick (skipped when another worker claimed it); delivery follows at once
    when it queued notifications."""
    report = alerting.evaluate_tick(timezone.now())
    if report is None:
        return None
    if report.notifications:
        deliver_notifications.delay()
    return {"rules": report.rules, "failed": report.failed_rules, "sent": report.notifications}


@shared_task(ignore_result=True)
def deliver_notifications() -> int:
    return alerting.deliver_due(timezone.now())
