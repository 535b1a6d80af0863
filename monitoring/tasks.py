from __future__ import annotations

from celery import shared_task

from . import retention


@shared_task(ignore_result=True)
def prune_raw_data() -> dict[str, int]:
    return retention.prune()
