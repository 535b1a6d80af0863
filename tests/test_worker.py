"""The Celery wiring, proven with real processes: a worker and beat on the configured broker
(kombu's filesystem transport by default, Redis when CELERY_BROKER_URL says so)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection
from django.utils import timezone

from monitoring import ingest, rollups, system
from monitoring.models import (
    Alert,
    AlertRule,
    GraphRun,
    MetricPoint,
    NodeRun,
    Notification,
    NotificationChannel,
    RollupDelta,
)
from tests.conftest import graph_run, make_key
from tests.fakes import FakeReceiver
from versioning.models import Graph

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def celery_processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "LGMON_DATA_DIR": str(tmp_path),
        "LGMON_PRUNE_INTERVAL_S": "1",
        "LGMON_ROLLUP_INTERVAL_S": "1",
        "LGMON_SYSTEM_SAMPLE_INTERVAL_S": "1",
        "LGMON_ALERT_EVAL_INTERVAL_S": "1",
        "LGMON_DELIVERY_INTERVAL_S": "1",
        "LGMON_GUARDRAIL_INTERVAL_S": "1",
        "LGMON_ALERTS_ALLOW_PRIVATE_TARGETS": "true",  # the fake webhook receiver is local
    }
    celery = [sys.executable, "-m", "celery", "-A", "lgmon_site"]
    logs = [open(tmp_path / name, "wb") for name in ("worker.log", "beat.log")]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            [*celery, "worker", "-l", "info", "-c", "1", "--without-mingle", "--without-gossip"],
            cwd=ROOT,
            env=env,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*celery, "beat", "-l", "info", "-s", str(tmp_path / "beat-schedule")],
            cwd=ROOT,
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def test_it_prunes_old_runs_on_the_beat_schedule(
    celery_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    graph = Graph.objects.create(name="support-bot")
    now = timezone.now()
    old, fresh = (
        GraphRun.objects.create(
            run_id=uuid.uuid4(), graph=graph, status="success", started_at=started, duration_ms=5
        )
        for started in (now - timedelta(days=30), now - timedelta(minutes=1))
    )
    NodeRun.objects.create(
        graph_run=old, node="a", status="success", started_at=old.started_at, duration_ms=1
    )

    deadline = time.monotonic() + 60
    while GraphRun.objects.filter(id=old.id).exists() and time.monotonic() < deadline:
        assert all(p.poll() is None for p in celery_processes), (
            tmp_path / "worker.log"
        ).read_text()
        time.sleep(0.5)

    logs = "\n".join((tmp_path / name).read_text() for name in ("worker.log", "beat.log"))
    assert not GraphRun.objects.filter(id=old.id).exists(), logs
    assert not NodeRun.objects.exists()
    assert GraphRun.objects.filter(id=fresh.id).exists()
    assert "Sending due task prune-raw-data" in logs
    assert "monitoring.tasks.prune_raw_data" in logs


def test_it_rolls_up_ingested_runs_on_the_beat_schedule(
    celery_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    now = timezone.now()
    batch = [
        graph_run(started_at=now - timedelta(seconds=10), status=s) for s in ("success", "error")
    ]
    assert ingest.ingest({"graph_runs": batch}, now).counts["created"] == 2
    scope = rollups.Scope(graph="support-bot")

    deadline = time.monotonic() + 60
    while RollupDelta.objects.exists() and time.monotonic() < deadline:
        assert all(p.poll() is None for p in celery_processes), (
            tmp_path / "worker.log"
        ).read_text()
        time.sleep(0.5)

    stats = rollups.window_stats(now - timedelta(minutes=5), now + timedelta(minutes=1), scope)
    assert (stats["runs"], stats["errors"]) == (2, 1), (tmp_path / "worker.log").read_text()
    assert "monitoring.tasks.apply_rollup_deltas" in (tmp_path / "worker.log").read_text()


def test_it_samples_system_metrics_on_the_beat_schedule(
    celery_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    deadline = time.monotonic() + 60
    names = {system.CPU_PERCENT, system.MEMORY_PERCENT, system.PROCESS_RSS_BYTES}
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in celery_processes), (
            tmp_path / "worker.log"
        ).read_text()
        if MetricPoint.objects.filter(name=system.CPU_PERCENT).count() >= 2:
            break
        time.sleep(0.5)

    points = MetricPoint.objects.filter(name__in=names)
    assert {p.name for p in points} == names, (tmp_path / "worker.log").read_text()
    memory = points.filter(name=system.MEMORY_PERCENT).first()
    assert memory is not None and 0 < memory.value <= 100
    rss = points.filter(name=system.PROCESS_RSS_BYTES).first()
    assert rss is not None and rss.value > 10_000_000  # a Celery worker is tens of MB
    assert rss.labels["process"] and rss.labels["pid"] != str(os.getpid())


def test_failing_runs_fire_one_alert_and_resolve_it_through_worker_and_beat(
    celery_processes: list[subprocess.Popen[bytes]], tmp_path: Path, live_server: Any
) -> None:
    """End to end: runs through the ingest API, rollups, evaluation and delivery on the beat
    schedule of a real worker; a local HTTP server plays the remote webhook."""
    receiver = FakeReceiver()
    try:
        AlertRule.objects.all().delete()
        AlertRule.objects.create(
            name="Checkout failing",
            metric="error_rate",
            scope="graph",
            graph="checkout",
            threshold=0.5,
            min_samples=5,
            severity="critical",
        )
        NotificationChannel.objects.create(
            name="hook", kind="webhook", config={"url": receiver.url("/hook")}
        )
        _, key = make_key("ingest", name="app")

        def post(status: str, count: int) -> None:
            started = timezone.now() - timedelta(seconds=2)
            batch = [graph_run("checkout", status=status, started_at=started) for _ in range(count)]
            response = requests.post(
                f"{live_server.url}/api/v1/ingest/",
                json={"graph_runs": batch},
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text

        def wait_for(kinds: list[str]) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert all(p.poll() is None for p in celery_processes), _logs(tmp_path)
                if [r.json()["kind"] for r in receiver.requests] == kinds:
                    return
                time.sleep(0.3)
            raise AssertionError(f"{receiver.requests} != {kinds}\n{_logs(tmp_path)}")

        post("error", 10)
        wait_for(["firing"])
        time.sleep(4)  # several more ticks while it keeps failing: no second notification
        post("success", 100)  # the failures stop: 10 of 110 failed in the window
        wait_for(["firing", "resolved"])
        time.sleep(2)

        assert [r.json()["kind"] for r in receiver.requests] == ["firing", "resolved"]
        alert = Alert.objects.get()
        assert (alert.state, alert.episode, alert.labels["graph"]) == ("inactive", 1, "checkout")
        assert list(Notification.objects.values_list("kind", "status").order_by("id")) == [
            ("firing", "sent"),
            ("resolved", "sent"),
        ]
        assert "monitoring.tasks.evaluate_alerts" in _logs(tmp_path)
    finally:
        receiver.close()


def _logs(tmp_path: Path) -> str:
    return "\n".join((tmp_path / name).read_text() for name in ("worker.log", "beat.log"))


def test_a_guardrail_stops_a_failing_experiment_on_the_beat_schedule(
    celery_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from tests.versioning.test_versions_api import V1, v2
    from versioning import experiments, services
    from versioning.models import Assignment, Experiment, Variant, VersionEvent

    control = services.register("support-bot", V1).version
    treatment = services.register("support-bot", v2()).version
    experiment = Experiment.objects.create(graph=control.graph, key="guarded", min_units=50)
    arms = [
        Variant.objects.create(experiment=experiment, position=0, name="a", version=control),
        Variant.objects.create(experiment=experiment, position=1, name="b", version=treatment),
    ]
    now = timezone.now()
    experiments.start(experiment, now=now - timedelta(minutes=5))
    runs = []
    for arm, failing in zip(arms, (0, 3), strict=True):  # b fails 3 runs in 4
        for index in range(200):
            user = f"{arm.name}-{index}"
            Assignment.objects.create(experiment=experiment, unit=user, variant=arm)
            runs += [
                graph_run(
                    started_at=now - timedelta(minutes=1),
                    status="error" if run < failing else "success",
                    user_id=user,
                    experiment=f"guarded:{arm.name}",
                    version=str(arm.version.number),
                )
                for run in range(4)
            ]
    assert ingest.ingest({"graph_runs": runs}, now).counts["created"] == 1600

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in celery_processes), _logs(tmp_path)
        if Experiment.objects.get(id=experiment.id).status == "stopped":
            break
        time.sleep(0.5)

    experiment.refresh_from_db()
    assert experiment.status == "stopped", _logs(tmp_path)
    assert "b is significantly worse than a: error_rate" in experiment.stopped_reason
    event = VersionEvent.objects.get(action="auto_rollback")
    assert (event.actor, event.reason) == ("lgmon guardrail", experiment.stopped_reason)
    assert "versioning.tasks.check_guardrails" in _logs(tmp_path)
