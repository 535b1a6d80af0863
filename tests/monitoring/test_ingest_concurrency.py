from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import ingest, rollups
from monitoring.models import GraphRun, MinuteRollup, NodeRun
from tests.conftest import graph_run, run_at_once

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_stores_each_run_once_when_the_same_batch_arrives_concurrently() -> None:
    """Four requests race with one batch (an SDK retrying while the first is in flight):
    the unique run id makes the losers retry and find duplicates; rollups count each once."""
    started = timezone.now() - timedelta(seconds=30)
    batch = {
        "graph_runs": [
            graph_run(started_at=started, nodes=[("a", "success", 2.0)]) for _ in range(50)
        ]
    }
    outcomes = run_at_once(lambda: ingest.ingest(batch, timezone.now()).counts, threads=4)

    rollups.apply_pending()
    assert sorted(outcome["created"] for outcome in outcomes) == [0, 0, 0, 50]
    assert GraphRun.objects.count() == 50
    assert NodeRun.objects.count() == 50
    assert sum(MinuteRollup.objects.filter(node="").values_list("count", flat=True)) == 50
    assert sum(MinuteRollup.objects.filter(node="a").values_list("count", flat=True)) == 50
