"""``@monitor_performance`` on plain sync and async functions, reported to a live lgmon."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lgmon_client import Sender, monitor_performance
from monitoring.models import GraphRun

pytestmark = pytest.mark.django_db(transaction=True)


def test_sync_and_async_calls_are_reported_with_errors_and_parents(sender: Sender) -> None:
    @monitor_performance("data_processor", sender=sender, user_id="u-5")
    async def process(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {**state, "processed": True}

    @monitor_performance(sender=sender)
    def validate(value: int) -> int:
        if value < 0:
            raise ValueError(f"negative: {value}")
        return value

    @monitor_performance("pipeline.outer", sender=sender)
    def outer() -> int:
        return validate(3)

    assert asyncio.run(process({"x": 1})) == {"x": 1, "processed": True}
    assert process.__name__ == "process"  # functools.wraps
    with pytest.raises(ValueError, match="negative: -1"):
        validate(-1)
    assert outer() == 3
    assert sender.flush(10)

    processed = GraphRun.objects.get(graph__name="data_processor")
    assert (processed.status, processed.user_id) == ("success", "u-5")
    assert 20 <= processed.duration_ms < 2_000
    name = f"{__name__}.{validate.__qualname__}"
    failed, nested = GraphRun.objects.filter(graph__name=name).order_by("started_at")
    assert (failed.status, failed.error) == ("error", "ValueError: negative: -1")
    assert nested.status == "success"
    assert nested.parent_run_id == GraphRun.objects.get(graph__name="pipeline.outer").run_id
    assert processed.parent_run_id is None


def test_bare_decorator_and_a_dead_server_never_reach_the_caller(unused_tcp_port: int) -> None:
    dead = Sender(f"http://127.0.0.1:{unused_tcp_port}", "k", max_retries=0)

    @monitor_performance(sender=dead)
    def double(x: int) -> int:
        return 2 * x

    assert [double(i) for i in range(5)] == [0, 2, 4, 6, 8]
    dead.close(timeout=5)
    assert dead.stats().failed == 5
