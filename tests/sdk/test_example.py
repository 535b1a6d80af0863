"""``examples/support_app.py`` run as a user would run it, against a live lgmon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitoring.models import GraphRun, NodeRun
from tests.conftest import make_key

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_app.py"


def test_example_app_sends_its_traffic(live_server: Any) -> None:
    _, key = make_key("ingest", name="demo")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--runs", "60", "--rate", "0", "--seed", "7"],
        env={"LGMON_URL": live_server.url, "LGMON_API_KEY": key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 undelivered" in done.stdout

    bots = GraphRun.objects.filter(graph__name="support-bot")
    assert bots.count() == 60
    assert bots.values("user_id").distinct().count() >= 4
    research = GraphRun.objects.filter(graph__name="research")
    assert research.exists()
    assert set(research.values_list("parent_run_id", flat=True)) <= set(
        bots.values_list("run_id", flat=True)
    )
    assert NodeRun.objects.filter(graph_run__in=research, node="search_docs").count() == (
        research.count()
    )
    flaky = NodeRun.objects.filter(node="lookup_account")
    assert flaky.filter(status="error").exists()  # the flaky node failed and was retried
    assert flaky.filter(status="success", attempt__gt=1).exists()
    assert GraphRun.objects.filter(graph__name="support.compose_reply").count() == 60
