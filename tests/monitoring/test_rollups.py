from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from monitoring import histogram, ingest, rollups
from monitoring.models import HourRollup, MinuteRollup, RollupDelta, SessionActivity
from tests.conftest import graph_run, run_at_once
from versioning.models import Graph

NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(NOW, tick=False):
        yield


def _stats(client: APIClient) -> dict[str, Any]:
    return dict(client.get("/api/v1/stats/", {"graph": "support-bot", "window": "1h"}).json())


@pytest.mark.django_db
def test_it_rolls_runs_up_when_the_task_applies_the_batch_delta(
    post_batch: Any, reader_client: APIClient
) -> None:
    post_batch([graph_run(started_at=NOW - timedelta(seconds=20))], roll_up=False)
    assert RollupDelta.objects.count() == 1
    assert _stats(reader_client)["runs"] == 0

    assert rollups.apply_pending() == 1

    assert _stats(reader_client)["runs"] == 1
    assert not RollupDelta.objects.exists()
    assert rollups.apply_pending() == 0


@pytest.mark.django_db
def test_it_folds_many_batches_into_one_row_per_bucket(
    post_batch: Any, reader_client: APIClient
) -> None:
    started = NOW - timedelta(seconds=20)
    for durations in ([10.0, 20.0], [30.0], [40.0, 1000.0]):
        post_batch(
            [
                graph_run(started_at=started, duration_ms=ms, user_id="u", session_id="s")
                for ms in durations
            ],
            roll_up=False,
        )
    assert rollups.apply_pending(max_deltas=2) == 3

    minute = MinuteRollup.objects.get(node="")
    assert (minute.count, minute.duration_sum_ms) == (5, 1100.0)
    assert (minute.duration_min_ms, minute.duration_max_ms) == (10.0, 1000.0)
    assert histogram.Histogram.from_bytes(minute.histogram).total == 5
    assert HourRollup.objects.get(node="").count == 5
    assert SessionActivity.objects.get().runs == 5
    stats = _stats(reader_client)
    assert stats["latency_ms"]["p50"] == pytest.approx(30.0, rel=0.01)


@pytest.mark.django_db
def test_it_drops_figures_of_a_graph_deleted_before_they_were_applied(post_batch: Any) -> None:
    post_batch([graph_run("doomed"), graph_run("kept")], roll_up=False)
    Graph.objects.filter(name="doomed").delete()
    assert rollups.apply_pending() == 1
    assert set(HourRollup.objects.values_list("graph__name", flat=True)) == {"kept"}


@pytest.mark.django_db(transaction=True)
def test_it_counts_every_run_once_when_two_workers_apply_at_the_same_time() -> None:
    started = NOW - timedelta(seconds=20)
    for _ in range(40):
        batch = [graph_run(started_at=started, nodes=[("a", "success", 3.0)]) for _ in range(5)]
        ingest.ingest({"graph_runs": batch}, NOW)
    applied = run_at_once(lambda: rollups.apply_pending(max_deltas=3), threads=2)

    assert sum(applied) == 40
    assert not RollupDelta.objects.exists()
    assert MinuteRollup.objects.get(node="").count == 200
    assert MinuteRollup.objects.get(node="a").count == 200
    assert HourRollup.objects.get(node="a").count == 200
