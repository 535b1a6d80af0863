from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import results
from .models import Experiment


@shared_task(ignore_result=True)
def check_guardrails() -> int:
    """Look at every running experiment: store its running sequential p-values, and stop and
    roll back those whose treatment breaches a guardrail. The number stopped."""
    stopped = 0
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING):
        stopped += results.check_guardrails(experiment, now=timezone.now()) is not None
    return stopped
