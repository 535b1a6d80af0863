"""The evaluator and the delivery outbox against the real database: runs go in through the
ingest API, ticks are evaluated at frozen times, notifications go to ``FakeReceiver`` (a local
HTTP server standing in for a remote webhook; nothing reaches the internet)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail

from monitoring import alerting, system
from monitoring.models import (
    Alert,
    AlertRule,
    AlertTick,
    MetricPoint,
    Notification,
    NotificationChannel,
    Silence,
)
from tests.conftest import graph_run, run_at_once, uses_postgres
from tests.fakes import FakeReceiver, Reply

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
Post = Callable[..., Any]


@pytest.fixture(autouse=True)
def _loopback_receivers(allow_private: None) -> None:
    """Every test here delivers to the fake receiver, on loopback."""


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def hook(receiver: FakeReceiver) -> NotificationChannel:
    return NotificationChannel.objects.create(
        name="ops-hook", kind="webhook", config={"url": receiver.url("/hook")}
    )


def tick(clock: Any, at: datetime) -> alerting.TickReport:
    clock.move_to(at)
    report = alerting.evaluate_tick(at)
    assert report is not None
    alerting.deliver_due(at)
    return report


def runs(post_batch: Post, clock: Any, at: datetime, errors: int, ok: int, **kw: Any) -> None:
    """Ingest runs that ended just before ``at`` (the clock moves there: ingest refuses runs
    from the future)."""
    clock.move_to(at)
    batch = [
        graph_run(started_at=at - timedelta(seconds=20), status=status, **kw)
        for status in ["error"] * errors + ["success"] * ok
    ]
    assert post_batch(batch).status_code == 200


def kinds(receiver: FakeReceiver) -> list[tuple[str, str]]:
    return [(r.json()["kind"], r.json()["rule"]) for r in receiver.requests]


def test_the_seed_error_rate_rule_fires_once_and_resolves_once(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    """The seed created an alert on every check while the condition held; lgmon notifies once
    per transition."""
    runs(post_batch, clock, T0, errors=5, ok=10)  # 33% errors over 15 runs (min_samples is 10)

    first = tick(clock, T0)
    for seconds in (30, 60, 90):
        tick(clock, T0 + timedelta(seconds=seconds))

    alert = Alert.objects.get()
    assert (alert.rule.name, alert.state, alert.episode) == ("High error rate", "firing", 1)
    assert alert.value == pytest.approx(5 / 15)
    assert alert.labels == {"alertname": "High error rate", "severity": "high"}
    assert first.events == {"pending": 1, "firing": 1}
    assert kinds(receiver) == [("firing", "High error rate")]
    body = receiver.requests[0].json()
    assert body["status"] == "firing" and body["fingerprint"] == alert.fingerprint
    assert "error rate 0.3333 > 0.1" in body["summary"]
    assert body["url"].endswith(f"/admin/monitoring/alert/{alert.id}/change/")

    runs(post_batch, clock, T0 + timedelta(minutes=2), errors=0, ok=60)  # 5 of 75: 6.7%
    tick(clock, T0 + timedelta(minutes=2))
    tick(clock, T0 + timedelta(minutes=2, seconds=30))

    alert.refresh_from_db()
    assert alert.state == "inactive" and alert.resolved_at == T0 + timedelta(minutes=2)
    assert kinds(receiver) == [("firing", "High error rate"), ("resolved", "High error rate")]
    assert receiver.requests[1].json()["ends_at"] == "2026-11-24T12:02:00+00:00"
    assert Notification.objects.filter(status="sent").count() == 2


def test_too_few_runs_are_no_data_not_an_alert(post_batch: Post, clock: Any) -> None:
    runs(post_batch, clock, T0, errors=3, ok=2)  # 60% errors, but 5 runs < min_samples 10

    tick(clock, T0)

    assert not Alert.objects.exists()


def test_each_node_gives_one_alert_per_slow_node(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    """The seed's latency check stopped at the first slow node; every slow node alerts."""
    nodes = [("plan", "success", 6000.0), ("search", "success", 7000.0), ("reply", "success", 9.0)]
    runs(post_batch, clock, T0, errors=0, ok=2, nodes=nodes)

    tick(clock, T0)

    firing = Alert.objects.filter(rule__name="Slow node", state="firing")
    assert sorted(a.labels["node"] for a in firing) == ["plan", "search"]
    assert {a.labels["graph"] for a in firing} == {"support-bot"}
    assert len({a.fingerprint for a in firing}) == 2
    assert sorted(r.json()["labels"]["node"] for r in receiver.requests) == ["plan", "search"]


def test_pending_for_the_for_duration_before_firing(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    AlertRule.objects.filter(name="High error rate").update(for_duration=timedelta(minutes=1))
    runs(post_batch, clock, T0, errors=10, ok=0)

    tick(clock, T0)
    assert Alert.objects.get().state == "pending" and receiver.requests == []
    tick(clock, T0 + timedelta(seconds=30))
    assert Alert.objects.get().state == "pending"
    tick(clock, T0 + timedelta(minutes=1))

    alert = Alert.objects.get()
    assert (alert.state, alert.active_at, alert.fired_at) == (
        "firing",
        T0,
        T0 + timedelta(minutes=1),
    )
    assert kinds(receiver) == [("firing", "High error rate")]


def test_each_tick_is_evaluated_once(post_batch: Post, clock: Any) -> None:
    runs(post_batch, clock, T0, errors=10, ok=0)

    assert alerting.evaluate_tick(T0 + timedelta(seconds=3)) is not None
    assert alerting.evaluate_tick(T0 + timedelta(seconds=29)) is None  # same 30 s tick
    assert alerting.evaluate_tick(T0 + timedelta(seconds=30)) is not None

    assert AlertTick.objects.count() == 2
    assert Notification.objects.count() == 0  # no channel yet; one alert either way
    assert Alert.objects.get().episode == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not uses_postgres(), reason="concurrent writers need PostgreSQL")
def test_concurrent_workers_evaluate_a_tick_once(hook: NotificationChannel) -> None:
    rule = AlertRule.objects.create(
        name="No traffic", metric="run_count", comparison="lt", threshold=1, window=timedelta(1)
    )

    reports = run_at_once(lambda: alerting.evaluate_tick(T0), threads=6)

    assert sum(report is not None for report in reports) == 1
    assert Alert.objects.get(rule=rule).state == "firing"
    assert Notification.objects.filter(kind="firing", alert__rule=rule).count() == 1


def test_a_failing_rule_is_marked_unhealthy_and_leaves_its_alerts(
    post_batch: Post, clock: Any, hook: NotificationChannel
) -> None:
    runs(post_batch, clock, T0, errors=10, ok=0)
    tick(clock, T0)
    rule = AlertRule.objects.get(name="High error rate")
    assert rule.health == "ok"
    # Broken behind the form's back (the admin would refuse it): a node scope with no node.
    AlertRule.objects.filter(id=rule.id).update(scope="node", node="")
    runs(post_batch, clock, T0 + timedelta(minutes=20), errors=0, ok=50)  # would resolve the alert

    report = tick(clock, T0 + timedelta(minutes=20))

    rule.refresh_from_db()
    assert (rule.health, report.failed_rules) == ("error", 1)
    assert "needs the node's name" in rule.last_error
    assert rule.last_evaluated_at == T0 + timedelta(minutes=20)
    assert Alert.objects.get(rule=rule).state == "firing"
    assert AlertRule.objects.get(name="Slow node").health == "ok"  # the others still ran
    assert not Notification.objects.filter(kind="resolved").exists()


def test_silenced_alerts_change_state_but_send_nothing_until_the_silence_ends(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    Silence.objects.create(
        matchers=[{"label": "alertname", "op": "=~", "value": "High.*"}],
        starts_at=T0 - timedelta(minutes=1),
        ends_at=T0 + timedelta(minutes=1),
    )
    runs(post_batch, clock, T0, errors=10, ok=0)

    tick(clock, T0)
    tick(clock, T0 + timedelta(seconds=30))
    assert Alert.objects.get().state == "firing" and receiver.requests == []

    tick(clock, T0 + timedelta(minutes=1))  # the silence has ended; still firing

    assert kinds(receiver) == [("firing", "High error rate")]


def test_repeats_while_firing_after_the_repeat_interval_unless_acknowledged(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    NotificationChannel.objects.filter(id=hook.id).update(repeat_interval=timedelta(minutes=2))
    AlertRule.objects.filter(name="High error rate").update(window=timedelta(hours=1))
    runs(post_batch, clock, T0, errors=10, ok=0)

    for seconds in range(0, 5 * 60, 30):
        tick(clock, T0 + timedelta(seconds=seconds))
    assert [kind for kind, _ in kinds(receiver)] == ["firing", "repeat", "repeat"]

    alert = Alert.objects.get()
    assert alerting.acknowledge(alert.id, by="alice", now=T0 + timedelta(minutes=5))
    for seconds in range(5 * 60, 10 * 60, 30):
        tick(clock, T0 + timedelta(seconds=seconds))
    assert len(receiver.requests) == 3


def test_manual_resolve_ends_the_episode_and_a_new_one_starts_if_it_still_holds(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    runs(post_batch, clock, T0, errors=10, ok=0)
    tick(clock, T0)
    alert = Alert.objects.get()

    assert alerting.resolve(alert.id, by="alice", now=T0 + timedelta(seconds=10))
    assert not alerting.resolve(alert.id, by="alice", now=T0 + timedelta(seconds=11))
    alerting.deliver_due(T0 + timedelta(seconds=10))
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == ("inactive", "alice")

    tick(clock, T0 + timedelta(seconds=30))  # the error rate is still 100%

    alert.refresh_from_db()
    assert (alert.state, alert.episode, alert.resolved_by) == ("firing", 2, "")
    assert [kind for kind, _ in kinds(receiver)] == ["firing", "resolved", "firing"]


def test_flapping_is_notified_once(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    """A 1-minute window and bursts of errors then successes flip the alert every minute."""
    AlertRule.objects.filter(name="High error rate").update(
        window=timedelta(minutes=1), min_samples=1
    )
    for minute in range(8):
        at = T0 + timedelta(minutes=minute)
        errors = 5 if minute % 2 == 0 else 0
        runs(post_batch, clock, at + timedelta(seconds=10), errors=errors, ok=1)
        tick(clock, at + timedelta(seconds=30))

    sent = [kind for kind, _ in kinds(receiver)]
    assert sent == ["firing", "resolved", "firing", "flapping"]
    assert Alert.objects.get().flapping


def test_no_data_as_alerting_and_a_no_traffic_rule(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    AlertRule.objects.all().delete()
    AlertRule.objects.create(
        name="Billing is silent",
        metric="run_count",
        scope="graph",
        graph="billing",
        comparison="lt",
        threshold=1,
        severity="critical",
    )
    AlertRule.objects.create(
        name="Billing p95",
        metric="latency_p95",
        scope="graph",
        graph="billing",
        threshold=1000,
        no_data="alerting",
    )

    tick(clock, T0)

    assert sorted(kinds(receiver)) == [("firing", "Billing is silent"), ("firing", "Billing p95")]
    assert Alert.objects.get(rule__name="Billing is silent").labels["graph"] == "billing"


def test_system_and_custom_metric_rules_alert_per_label_set(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    AlertRule.objects.all().delete()
    AlertRule.objects.create(name="Busy host", metric="system_cpu", threshold=90)
    AlertRule.objects.create(
        name="Queue depth", metric="custom", custom_metric="queue.depth", threshold=100
    )
    for minute, web, db in ((1, 95.0, 20.0), (2, 99.0, 40.0)):
        at = T0 - timedelta(minutes=minute)
        for host, value in (("web-1", web), ("db-1", db)):
            MetricPoint.objects.create(
                name=system.CPU_PERCENT, timestamp=at, value=value, labels={"host": host}
            )
    MetricPoint.objects.create(
        name="queue.depth", timestamp=T0 - timedelta(seconds=5), value=250, labels={}
    )

    tick(clock, T0)

    busy = Alert.objects.get(rule__name="Busy host")
    assert (busy.labels["host"], busy.value) == ("web-1", 97.0)
    assert Alert.objects.get(rule__name="Queue depth").value == 250
    assert sorted(kinds(receiver)) == [("firing", "Busy host"), ("firing", "Queue depth")]


def test_disabling_a_rule_resolves_its_alerts(
    post_batch: Post, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    runs(post_batch, clock, T0, errors=10, ok=0)
    tick(clock, T0)
    AlertRule.objects.filter(name="High error rate").update(enabled=False)

    tick(clock, T0 + timedelta(seconds=30))

    alert = Alert.objects.get()
    assert (alert.state, alert.resolved_by) == ("inactive", "rule disabled")
    assert [kind for kind, _ in kinds(receiver)] == ["firing", "resolved"]


def test_channel_filters_severity_and_send_resolved(
    post_batch: Post, clock: Any, receiver: FakeReceiver
) -> None:
    NotificationChannel.objects.create(
        name="pager",
        kind="webhook",
        config={"url": receiver.url("/pager")},
        min_severity="critical",
    )
    NotificationChannel.objects.create(
        name="chat", kind="webhook", config={"url": receiver.url("/chat")}, send_resolved=False
    )
    runs(post_batch, clock, T0, errors=10, ok=0)
    tick(clock, T0)
    runs(post_batch, clock, T0 + timedelta(minutes=1), errors=0, ok=200)
    tick(clock, T0 + timedelta(minutes=1))

    assert [(r.path, r.json()["kind"]) for r in receiver.requests] == [("/chat", "firing")]


def test_email_channels_use_djangos_mail(post_batch: Post, clock: Any) -> None:
    NotificationChannel.objects.create(name="mail", kind="email", config={"to": ["oncall@x.io"]})
    runs(post_batch, clock, T0, errors=10, ok=0)

    tick(clock, T0)

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["oncall@x.io"]
    assert mail.outbox[0].subject.startswith("[FIRING high] High error rate")


# --- delivery ----------------------------------------------------------------------------------


def queued(channel: NotificationChannel, at: datetime = T0) -> Notification:
    message = alerting.test_message(channel, at)
    return Notification.objects.create(
        channel=channel,
        kind="firing",
        message=alerting.message_to_json(message),
        created_at=at,
        next_attempt_at=at,
    )


def test_delivery_retries_server_errors_with_backoff(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    receiver.reply(Reply(status=503), Reply(status=502))
    notification = queued(hook)

    assert alerting.deliver_due(T0) == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert "HTTP 503" in notification.last_error
    assert T0 + timedelta(seconds=5) <= notification.next_attempt_at <= T0 + timedelta(seconds=10)
    assert alerting.deliver_due(T0 + timedelta(seconds=4)) == 0  # not due yet

    clock.move_to(notification.next_attempt_at)
    alerting.deliver_due(notification.next_attempt_at)
    notification.refresh_from_db()
    assert notification.attempts == 2 and notification.status == "pending"
    clock.move_to(notification.next_attempt_at)
    alerting.deliver_due(notification.next_attempt_at)

    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.last_error) == (
        "sent",
        3,
        "",
    )
    assert len(receiver.requests) == 3


def test_delivery_honours_retry_after(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    receiver.reply(Reply(status=429, headers={"Retry-After": "120"}))
    notification = queued(hook)

    alerting.deliver_due(T0)

    notification.refresh_from_db()
    assert notification.status == "pending"
    assert notification.next_attempt_at >= T0 + timedelta(seconds=120)


def test_a_permanent_failure_disables_the_channel_with_the_reason(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    receiver.reply(Reply(status=404, body=b"no such hook"))
    first, second = queued(hook), queued(hook)

    alerting.deliver_due(T0)

    first.refresh_from_db()
    second.refresh_from_db()
    hook.refresh_from_db()
    assert (first.status, first.attempts) == ("failed", 1)
    assert not hook.enabled
    assert "HTTP 404: no such hook" in hook.disabled_reason
    assert (second.status, second.last_error) == ("failed", "the channel is disabled")
    assert len(receiver.requests) == 1


def test_refused_private_targets_fail_permanently(
    settings: Any, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    settings.LGMON_ALERTS_ALLOW_PRIVATE_TARGETS = False
    notification = queued(hook)

    alerting.deliver_due(T0)

    notification.refresh_from_db()
    hook.refresh_from_db()
    assert notification.status == "failed" and receiver.requests == []
    assert "not allowed" in hook.disabled_reason


def test_delivery_gives_up_after_the_attempt_limit(
    settings: Any, clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    settings.LGMON_DELIVERY_MAX_ATTEMPTS = 2
    receiver.reply(Reply(status=500), Reply(status=500))
    notification = queued(hook)

    alerting.deliver_due(T0)
    later = T0 + timedelta(hours=2)
    clock.move_to(later)
    alerting.deliver_due(later)

    notification.refresh_from_db()
    hook.refresh_from_db()
    assert notification.status == "failed"
    assert notification.last_error.startswith("gave up after 2 attempts: HTTP 500")
    assert hook.enabled  # an outage is not a broken channel


def test_a_claim_is_taken_once_and_a_stale_claim_is_taken_over(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    notification = queued(hook)
    Notification.objects.filter(id=notification.id).update(
        status="sending", claimed_until=T0 + timedelta(minutes=1), attempts=1
    )

    assert alerting.deliver(notification.id, T0) is None  # another worker holds it
    assert receiver.requests == []

    outcome = alerting.deliver(notification.id, T0 + timedelta(minutes=2))  # that worker died

    assert outcome is not None and outcome.status == "sent"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("sent", 2)
    assert alerting.deliver(notification.id, T0 + timedelta(minutes=3)) is None


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [alerting.backoff(attempt, None, rng).total_seconds() for attempt in range(1, 12)]

    assert 5 <= delays[0] <= 10 and 10 <= delays[1] <= 20 and 20 <= delays[2] <= 40
    assert all(1800 <= delay <= 3600 for delay in delays[-2:])
    assert alerting.backoff(1, 300.0, rng) >= timedelta(seconds=300)
    assert alerting.backoff(1, 10**9, rng) <= timedelta(hours=1)


def test_send_test_reports_the_outcome_and_logs_it(
    clock: Any, receiver: FakeReceiver, hook: NotificationChannel
) -> None:
    assert alerting.send_test(hook, T0).status == "sent"
    receiver.reply(Reply(status=400), Reply(status=503))
    assert alerting.send_test(hook, T0).status == "permanent"
    assert alerting.send_test(hook, T0).status == "retry"
    alerting.deliver_due(T0 + timedelta(hours=1))  # the person saw it fail: no retry later

    hook.refresh_from_db()
    assert hook.enabled  # a failed test does not disable the channel
    assert [r.json()["kind"] for r in receiver.requests] == ["test", "test", "test"]
    assert list(Notification.objects.order_by("id").values_list("kind", "status")) == [
        ("test", "sent"),
        ("test", "failed"),
        ("test", "failed"),
    ]


def test_rules_over_many_graphs_share_one_read_and_keep_their_own_figures(
    post_batch: Post, clock: Any
) -> None:
    """Per-graph and per-node rules of one window are answered from one grouped read; each
    still gets its own graph's (or node's) figures, and a graph without runs gets zero."""
    AlertRule.objects.all().delete()
    for graph in ("support-bot", "billing", "quiet"):
        AlertRule.objects.create(
            name=f"{graph} runs",
            metric="run_count",
            scope="graph",
            graph=graph,
            comparison="gte",
            threshold=0,
        )
        AlertRule.objects.create(
            name=f"{graph}/plan p50",
            metric="latency_p50",
            scope="node",
            graph=graph,
            node="plan",
            comparison="gte",
            threshold=0,
        )
    runs(post_batch, clock, T0, errors=1, ok=2, nodes=[("plan", "success", 40.0)])
    runs(post_batch, clock, T0, errors=0, ok=1, graph="billing", nodes=[("plan", "success", 7.0)])
    rules = list(AlertRule.objects.all())
    measurements = alerting.Measurements(T0, rules)

    values = {rule.name: alerting.measure(rule, measurements) for rule in rules}

    assert values["support-bot runs"] == {(("graph", "support-bot"),): alerting.Sample(3.0, 3)}
    assert values["billing runs"] == {(("graph", "billing"),): alerting.Sample(1.0, 1)}
    assert values["quiet runs"] == {(("graph", "quiet"),): alerting.Sample(0.0, 0)}
    [support_plan] = values["support-bot/plan p50"].values()
    [billing_plan] = values["billing/plan p50"].values()
    assert support_plan.value == pytest.approx(40.0, rel=0.02) and support_plan.samples == 3
    assert billing_plan.value == pytest.approx(7.0, rel=0.02) and billing_plan.samples == 1
    assert values["quiet/plan p50"] == {
        (("graph", "quiet"), ("node", "plan")): alerting.Sample(None, 0)
    }
