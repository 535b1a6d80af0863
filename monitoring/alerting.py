"""Alert evaluation and notification delivery: the database side of ``lifecycle``.

One evaluation tick (``evaluate_tick``, run by Celery beat every
``LGMON_ALERT_EVAL_INTERVAL_S``):

1. The tick time is ``now`` rounded down to the interval, and the tick is claimed by inserting
   an ``AlertTick`` row: its unique key lets exactly one worker evaluate it, however many
   workers and beats run. Every window ends at the tick time, not at the moment a worker got
   round to it.
2. Each enabled rule measures its metric per label set: run metrics from the rollups (so a tick
   costs the same at 1M or 100M stored runs), system and custom metrics from metric points
   (the window's average, one alert per distinct point label set).
3. ``lifecycle.evaluate`` steps each alert; the new states and their ``Notification`` rows are
   written in one transaction per rule (the outbox). A rule whose measurement raises is marked
   unhealthy with the error and its alerts are left as they were.

Delivery (``deliver_due``, right after a tick that queued something and every
``LGMON_DELIVERY_INTERVAL_S``): each due row is claimed by a conditional update, sent through
``transports.send`` outside any transaction, and its outcome written back: sent; retried later
with exponential backoff and jitter (at least the receiver's ``Retry-After``); or failed, where a
permanent failure also disables the channel with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, F, Max, Q
from django.urls import reverse
from django.utils import timezone

from . import lifecycle, rollups, system, transports
from .models import (
    Alert,
    AlertRule,
    AlertTick,
    MetricPoint,
    Notification,
    NotificationChannel,
    Silence,
)

logger = logging.getLogger(__name__)

Labels = dict[str, str]
LabelKey = tuple[tuple[str, str], ...]

RUN_METRICS = AlertRule.RUN_METRICS
POINT_NAMES: dict[str, str] = {
    AlertRule.Metric.SYSTEM_CPU: system.CPU_PERCENT,
    AlertRule.Metric.SYSTEM_MEMORY: system.MEMORY_PERCENT,
}
COMPARE = {
    AlertRule.Comparison.GT: float.__gt__,
    AlertRule.Comparison.GTE: float.__ge__,
    AlertRule.Comparison.LT: float.__lt__,
    AlertRule.Comparison.LTE: float.__le__,
}
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TICK_HISTORY = timedelta(days=1)
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(hours=1)


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A rule's metric for one label set over its window: ``samples`` runs or points."""

    value: float | None
    samples: int


def label_key(labels: Labels) -> LabelKey:
    return tuple(sorted(labels.items()))


def fingerprint(rule_id: int, labels: Labels) -> str:
    """The alert's identity: the rule and the label set its measurement gave."""
    raw = json.dumps([rule_id, label_key(labels)], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


class Measurements:
    """Window statistics for one tick, each read once.

    Rules that share a window and scope share the read. And where rules ask the same window
    of several single graphs (or nodes), one grouped read over every graph (or node) answers
    them all: a team keeping "p95 over 15 min" for each of 40 graphs costs one query, not 40.
    """

    def __init__(self, end: datetime, rules: Iterable[AlertRule] = ()) -> None:
        self.end = end
        self._single: dict[tuple[timedelta, rollups.Scope], dict[str, Any]] = {}
        self._grouped: dict[tuple[timedelta, rollups.Scope], list[dict[str, Any]]] = {}
        self._indexed: dict[tuple[timedelta, bool], dict[tuple[str, str], dict[str, Any]]] = {}
        wanted: dict[tuple[timedelta, bool], set[str]] = {}
        for rule in rules:
            if rule.metric in RUN_METRICS and rule.scope == AlertRule.ScopeKind.GRAPH:
                wanted.setdefault((rule.window, False), set()).add(rule.graph)
            elif rule.metric in RUN_METRICS and rule.scope == AlertRule.ScopeKind.NODE:
                wanted.setdefault((rule.window, True), set()).add(f"{rule.graph}/{rule.node}")
        self._batched = {key for key, targets in wanted.items() if len(targets) > 1}

    def single(self, window: timedelta, scope: rollups.Scope) -> dict[str, Any]:
        level = (window, scope.node is not None)
        if scope.graph is not None and level in self._batched:
            return self._from_grouped(window, scope)
        key = (window, scope)
        if key not in self._single:
            self._single[key] = rollups.window_stats(self.end - window, self.end, scope)
        return self._single[key]

    def grouped(self, window: timedelta, scope: rollups.Scope) -> list[dict[str, Any]]:
        key = (window, scope)
        if key not in self._grouped:
            self._grouped[key] = rollups.grouped_window_stats(self.end - window, self.end, scope)
        return self._grouped[key]

    def _from_grouped(self, window: timedelta, scope: rollups.Scope) -> dict[str, Any]:
        nodes = scope.node is not None
        level = (window, nodes)
        if level not in self._indexed:
            every = rollups.Scope(node=rollups.Scope.ALL_NODES if nodes else None)
            self._indexed[level] = {
                (entry["graph"], entry.get("node", "")): entry
                for entry in self.grouped(window, every)
            }
        found = self._indexed[level].get((scope.graph or "", scope.node or ""))
        return found if found is not None else rollups.Stats().as_dict()


def measure(rule: AlertRule, measurements: Measurements) -> dict[LabelKey, Sample]:
    """The rule's metric for every label set it yields, over the window ending at the tick."""
    problems = rule.problems()
    if problems:
        raise ValueError(" ".join(problems.values()))
    if rule.metric in RUN_METRICS:
        return _measure_runs(rule, measurements)
    return _measure_points(rule, measurements.end)


def _run_value(rule: AlertRule, stats: dict[str, Any]) -> Sample:
    runs = int(stats["runs"])
    metric = rule.metric
    value: float | None
    if metric == AlertRule.Metric.ERROR_RATE:
        value = stats["error_rate"]
    elif metric == AlertRule.Metric.RUN_COUNT:
        value = float(runs)
    else:
        value = stats["latency_ms"][metric.removeprefix("latency_")]
    return Sample(None if value is None else float(value), runs)


def _measure_runs(rule: AlertRule, measurements: Measurements) -> dict[LabelKey, Sample]:
    Kind = AlertRule.ScopeKind
    window, graph, node = rule.window, rule.graph or None, rule.node or None
    if rule.scope in (Kind.ALL, Kind.GRAPH, Kind.NODE):
        node = node if rule.scope == Kind.NODE else None
        graph = None if rule.scope == Kind.ALL else graph
        labels: Labels = {}
        if graph is not None:
            labels["graph"] = graph
        if node is not None:
            labels["node"] = node
        stats = measurements.single(window, rollups.Scope(graph=graph, node=node))
        return {label_key(labels): _run_value(rule, stats)}
    each_node = rule.scope == Kind.EACH_NODE
    scope = rollups.Scope(graph=graph, node=rollups.Scope.ALL_NODES if each_node else None)
    found: dict[LabelKey, Sample] = {}
    for entry in measurements.grouped(window, scope):
        labels = {"graph": entry["graph"]}
        if each_node:
            labels["node"] = entry["node"]
        found[label_key(labels)] = _run_value(rule, entry)
    return found


def _measure_points(rule: AlertRule, end: datetime) -> dict[LabelKey, Sample]:
    name = POINT_NAMES.get(rule.metric, rule.custom_metric)
    points = MetricPoint.objects.filter(name=name, timestamp__gte=end - rule.window)
    points = points.filter(timestamp__lt=end)
    if rule.graph:
        points = points.filter(labels__graph=rule.graph)
    if rule.node:
        points = points.filter(labels__node=rule.node)
    found: dict[LabelKey, Sample] = {}
    for row in points.values("labels").annotate(mean=Avg("value"), n=Count("id")).order_by():
        labels = {str(k): str(v) for k, v in (row["labels"] or {}).items()}
        key = label_key(labels)
        previous = found.get(key)  # label dicts equal but stored differently (key order)
        if previous is not None and previous.value is not None:
            n = previous.samples + row["n"]
            mean = (previous.value * previous.samples + row["mean"] * row["n"]) / n
            found[key] = Sample(mean, n)
        else:
            found[key] = Sample(float(row["mean"]), int(row["n"]))
    return found


def condition(rule: AlertRule, sample: Sample | None) -> bool | None:
    """Whether the rule's condition holds; None for no data (or too few samples)."""
    if sample is None or sample.value is None:
        return None
    if rule.metric != AlertRule.Metric.RUN_COUNT and sample.samples < rule.min_samples:
        return None
    return COMPARE[AlertRule.Comparison(rule.comparison)](sample.value, float(rule.threshold))


# --- silences ----------------------------------------------------------------------------------


def matches(matchers: Sequence[dict[str, str]], labels: Labels) -> bool:
    """Whether labels satisfy every matcher (Alertmanager's =, !=, =~, !~; regexes anchored;
    a missing label is the empty string)."""
    for matcher in matchers:
        actual = labels.get(matcher["label"], "")
        op, value = matcher.get("op", "="), matcher["value"]
        if op == "=":
            ok = actual == value
        elif op == "!=":
            ok = actual != value
        elif op in ("=~", "!~"):
            ok = (re.fullmatch(value, actual) is not None) == (op == "=~")
        else:
            return False
        if not ok:
            return False
    return bool(matchers)


def active_silences(now: datetime) -> list[Silence]:
    return list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))


def is_silenced(silences: Iterable[Silence], labels: Labels) -> bool:
    return any(matches(silence.matchers, labels) for silence in silences)


# --- the tick ----------------------------------------------------------------------------------


@dataclass
class TickReport:
    tick_at: datetime
    rules: int = 0
    failed_rules: int = 0
    alerts_changed: int = 0
    notifications: int = 0
    events: dict[str, int] = field(default_factory=dict)


def tick_time(now: datetime, interval: timedelta | None = None) -> datetime:
    """``now`` rounded down to the evaluation interval (aligned to a fixed epoch)."""
    if interval is None:
        interval = timedelta(seconds=settings.LGMON_ALERT_EVAL_INTERVAL_S)
    return now - (now - EPOCH) % interval


def claim_tick(tick_at: datetime, now: datetime) -> bool:
    """Whether this caller won the tick (the unique ``tick_at`` admits one)."""
    try:
        with transaction.atomic():
            AlertTick.objects.create(tick_at=tick_at, claimed_at=now)
    except IntegrityError:
        return False
    return True


def evaluate_tick(now: datetime) -> TickReport | None:
    """Claim the tick ``now`` falls in and evaluate every rule at its time; None when another
    worker has it already."""
    tick_at = tick_time(now)
    if not claim_tick(tick_at, now):
        return None
    report = TickReport(tick_at)
    rules = list(AlertRule.objects.filter(enabled=True))
    context = _TickContext.at(tick_at, rules)
    context.open_rules = set(
        Alert.objects.exclude(state=Alert.State.INACTIVE).values_list("rule_id", flat=True)
    )
    healthy = [rule.id for rule in rules if evaluate_rule(rule, context, report)]
    report.rules = len(rules)
    AlertRule.objects.filter(id__in=healthy).update(
        health=AlertRule.Health.OK, last_error="", last_evaluated_at=tick_at
    )
    _close_alerts_of_disabled_rules(tick_at, context, report)
    AlertTick.objects.filter(tick_at=tick_at).update(finished_at=timezone.now())
    AlertTick.objects.filter(tick_at__lt=tick_at - TICK_HISTORY).delete()
    return report


@dataclass
class _TickContext:
    tick_at: datetime
    measurements: Measurements
    silences: list[Silence]
    channels: list[NotificationChannel]
    open_rules: set[int] = field(default_factory=set)
    """Rules with a pending or firing alert when the tick began."""

    @classmethod
    def at(cls, moment: datetime, rules: Iterable[AlertRule] = ()) -> _TickContext:
        """What notifications at ``moment`` depend on: active silences, enabled channels."""
        return cls(
            tick_at=moment,
            measurements=Measurements(moment, rules),
            silences=active_silences(moment),
            channels=list(NotificationChannel.objects.filter(enabled=True)),
        )


def evaluate_rule(rule: AlertRule, context: _TickContext, report: TickReport) -> bool:
    """Step every alert of one rule; False when the rule could not be evaluated (it is then
    marked unhealthy, and its alerts are left as they were)."""
    tick_at = context.tick_at
    try:
        samples = measure(rule, context.measurements)
    except Exception as exc:  # any failure of one rule must leave the others and its alerts be
        logger.warning("alert rule %r failed to evaluate: %s", rule.name, exc)
        report.failed_rules += 1
        AlertRule.objects.filter(id=rule.id).update(
            health=AlertRule.Health.ERROR,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            last_evaluated_at=tick_at,
        )
        return False
    measured = {
        fingerprint(rule.id, dict(key)): (dict(key), sample, condition(rule, sample))
        for key, sample in samples.items()
    }
    alerting_no_data = rule.no_data == AlertRule.NoData.ALERTING

    def starts(holds: bool | None) -> bool:
        return bool(holds) or (holds is None and alerting_no_data)

    if rule.id not in context.open_rules and not any(starts(h) for *_, h in measured.values()):
        return True  # nothing open and nothing to open: the common, quiet case
    timing = lifecycle.Timing(
        for_=rule.for_duration,
        keep_firing_for=rule.keep_firing_for,
        no_data=cast(lifecycle.NoData, rule.no_data),
    )
    with transaction.atomic():
        alerts = {
            alert.fingerprint: alert
            for alert in Alert.objects.select_for_update().filter(rule=rule)
        }
        steps: list[tuple[Alert, lifecycle.Step]] = []
        for print_, (labels, sample, holds) in measured.items():
            alert = alerts.get(print_)
            if alert is None:
                if not starts(holds):
                    continue  # an alert row is made the first time its condition holds
                alert = Alert(rule=rule, fingerprint=print_)
            alert.labels = alert_labels(rule, labels)
            alert.value = sample.value
            alert.last_evaluated_at = tick_at
            steps.append((alert, lifecycle.evaluate(to_state(alert), holds, tick_at, timing)))
        for print_, alert in alerts.items():
            if print_ not in measured and alert.state != Alert.State.INACTIVE:
                alert.value = None  # the label set has no runs or points in the window
                alert.last_evaluated_at = tick_at
                steps.append((alert, lifecycle.evaluate(to_state(alert), None, tick_at, timing)))
        _store(rule, steps, context, report)
    return True


STORED_FIELDS = [
    "labels",
    "state",
    "episode",
    "active_at",
    "fired_at",
    "last_held_at",
    "resolved_at",
    "resolved_by",
    "flips",
    "flapping",
    "value",
    "last_evaluated_at",
    "acknowledged_at",
    "acknowledged_by",
]


AT_REST_FIELDS = ["value", "last_evaluated_at", "last_held_at", "flips", "flapping"]
"""What a tick without events can change."""


def _update(alerts: list[Alert], fields: list[str]) -> None:
    # bulk_update's CASE expressions cost milliseconds to build: one row is a plain UPDATE.
    if len(alerts) == 1:
        alerts[0].save(update_fields=fields)
    elif alerts:
        Alert.objects.bulk_update(alerts, fields)


def _store(
    rule: AlertRule,
    steps: Sequence[tuple[Alert, lifecycle.Step]],
    context: _TickContext,
    report: TickReport,
    *,
    resolved_by: str = "",
) -> None:
    """Write the steps of one rule's alerts and queue what each channel should be sent (the
    caller holds the transaction, so both land together)."""
    # An alert at rest (inactive, nothing happened) is neither written nor notified.
    changed = [(a, step) for a, step in steps if step.events or a.state != Alert.State.INACTIVE]
    for alert, step in changed:
        for event in step.events:
            report.events[event] = report.events.get(event, 0) + 1
        report.alerts_changed += bool(step.events)
        if lifecycle.Event.PENDING in step.events:
            alert.episode += 1
            alert.acknowledged_at, alert.acknowledged_by, alert.resolved_by = None, "", ""
        if lifecycle.Event.RESOLVED in step.events or lifecycle.Event.CLEARED in step.events:
            alert.resolved_by = resolved_by
        from_state(alert, step.alert)
    Alert.objects.bulk_create([a for a, _ in changed if a.pk is None])
    _update([a for a, step in changed if a.pk is not None and step.events], STORED_FIELDS)
    _update([a for a, step in changed if a.pk is not None and not step.events], AT_REST_FIELDS)
    # A pending alert at rest is never notified; a firing one may be due a repeat.
    due = [(a, step) for a, step in changed if step.events or a.state == Alert.State.FIRING]
    if not due or not context.channels:
        return
    delivered = _delivered([alert for alert, _ in due])
    rows = []
    for alert, step in due:
        silenced = is_silenced(context.silences, alert.labels)
        for channel in context.channels:
            kinds = lifecycle.to_send(
                step,
                now=context.tick_at,
                severity=rule.severity,
                channel=lifecycle.Channel(
                    min_severity=channel.min_severity,
                    send_resolved=channel.send_resolved,
                    repeat_interval=channel.repeat_interval,
                ),
                delivered=delivered.get((alert.id, channel.id), lifecycle.Delivered()),
                silenced=silenced,
                acknowledged=alert.acknowledged_at is not None,
            )
            rows += [
                Notification(
                    alert=alert,
                    channel=channel,
                    episode=alert.episode,
                    kind=kind,
                    message=message_to_json(build_message(kind, rule, alert)),
                    created_at=context.tick_at,
                    next_attempt_at=context.tick_at,
                )
                for kind in kinds
            ]
    Notification.objects.bulk_create(rows)
    report.notifications += len(rows)


def alert_labels(rule: AlertRule, group: Labels) -> Labels:
    """What silences match and notifications show: rule name and severity, the rule's own
    labels, then the label set the measurement gave."""
    static = {str(k): str(v) for k, v in (rule.labels or {}).items()}
    return {"alertname": rule.name, "severity": rule.severity, **static, **group}


def _delivered(alerts: Sequence[Alert]) -> dict[tuple[int, int], lifecycle.Delivered]:
    """Per (alert, channel), what the alert's current episode has been sent."""
    episodes = {alert.id: alert.episode for alert in alerts}
    found: dict[tuple[int, int], lifecycle.Delivered] = {}
    rows = (
        Notification.objects.filter(alert_id__in=list(episodes))
        .values("alert_id", "episode", "channel_id", "kind", "status")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    for row in rows:
        if row["episode"] != episodes[row["alert_id"]]:
            continue
        key = (row["alert_id"], row["channel_id"])
        previous = found.get(key, lifecycle.Delivered())
        kind, alive = row["kind"], row["status"] != Notification.Status.FAILED
        if kind in ("firing", "repeat"):
            last = max(filter(None, (previous.last_at, row["last"])))
            previous = lifecycle.Delivered(previous.firing or alive, last, previous.resolved)
        elif kind == "resolved" and alive:
            previous = lifecycle.Delivered(previous.firing, previous.last_at, True)
        found[key] = previous
    return found


def to_state(alert: Alert) -> lifecycle.Alert:
    return lifecycle.Alert(
        state=lifecycle.State(alert.state),
        active_at=alert.active_at,
        fired_at=alert.fired_at,
        last_held_at=alert.last_held_at,
        resolved_at=alert.resolved_at,
        flips=tuple(datetime.fromisoformat(moment) for moment in alert.flips),
        flapping=alert.flapping,
    )


def from_state(alert: Alert, state: lifecycle.Alert) -> None:
    alert.state = state.state.value
    alert.active_at = state.active_at
    alert.fired_at = state.fired_at
    alert.last_held_at = state.last_held_at
    alert.resolved_at = state.resolved_at
    alert.flips = [moment.isoformat() for moment in state.flips]
    alert.flapping = state.flapping


def _close_alerts_of_disabled_rules(
    tick_at: datetime, context: _TickContext, report: TickReport
) -> None:
    """A disabled rule's open alerts are resolved rather than left firing for ever."""
    open_alerts = Alert.objects.filter(rule__enabled=False).exclude(state=Alert.State.INACTIVE)
    for alert_id in open_alerts.values_list("id", flat=True):
        resolve(alert_id, by="rule disabled", now=tick_at, context=context, report=report)


# --- people acting on alerts -------------------------------------------------------------------


def resolve(
    alert_id: int,
    *,
    by: str,
    now: datetime,
    context: _TickContext | None = None,
    report: TickReport | None = None,
) -> bool:
    """Resolve an alert by hand: its episode ends now (channels that were told it fired are
    told it resolved); if the condition still holds, the next tick starts a new episode.
    False when it was not open."""
    with transaction.atomic():
        locked = Alert.objects.select_for_update(of=("self",)).select_related("rule")
        alert = locked.get(id=alert_id)
        step = lifecycle.resolve_manually(to_state(alert), now)
        if not step.events:
            return False
        if context is None:
            context = _TickContext.at(now)
        _store(alert.rule, [(alert, step)], context, report or TickReport(now), resolved_by=by)
    return True


def acknowledge(alert_id: int, *, by: str, now: datetime) -> bool:
    """Mark an open alert's episode as being handled: it is not repeated any more. False when
    it is not open or acknowledged already."""
    updated = (
        Alert.objects.filter(id=alert_id, acknowledged_at=None)
        .exclude(state=Alert.State.INACTIVE)
        .update(acknowledged_at=now, acknowledged_by=by)
    )
    return updated == 1


def silence_for(alert: Alert, duration: timedelta, *, by: str, now: datetime) -> Silence:
    """A silence matching exactly this alert's labels from now for ``duration``."""
    matchers = [
        {"label": name, "op": "=", "value": value} for name, value in sorted(alert.labels.items())
    ]
    return Silence.objects.create(
        matchers=matchers,
        starts_at=now,
        ends_at=now + duration,
        comment=f"Silenced from alert {alert} for {duration}.",
        created_by=by,
        created_at=now,
    )


# --- messages ----------------------------------------------------------------------------------


def describe(rule: AlertRule, value: float | None, labels: Labels) -> str:
    """``error rate 0.42 > 0.1 over 0:10:00 (graph=support-bot)``."""
    custom = rule.metric == AlertRule.Metric.CUSTOM
    metric = rule.custom_metric if custom else str(rule.get_metric_display())
    shown = "no data" if value is None else f"{value:.4g}"
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k in ("graph", "node"))
    text = f"{metric} {shown} {rule.get_comparison_display()} {rule.threshold:g} over {rule.window}"
    return f"{text} ({where})" if where else text


def alert_url(alert_id: int | None) -> str:
    if alert_id is None:
        return ""
    path = reverse("admin:monitoring_alert_change", args=[alert_id])
    return f"{settings.LGMON_PUBLIC_URL}{path}"


def build_message(kind: str, rule: AlertRule, alert: Alert) -> transports.Message:
    starts = alert.fired_at or alert.active_at or alert.last_evaluated_at
    assert starts is not None
    return transports.Message(
        kind=kind,  # type: ignore[arg-type]
        fingerprint=alert.fingerprint,
        rule=rule.name,
        severity=rule.severity,  # type: ignore[arg-type]
        labels=dict(alert.labels),
        summary=describe(rule, alert.value, alert.labels),
        value=alert.value,
        starts_at=starts,
        ends_at=alert.resolved_at if kind == "resolved" else None,
        url=alert_url(alert.pk),
    )


def test_message(channel: NotificationChannel, now: datetime) -> transports.Message:
    return transports.Message(
        kind="test",
        fingerprint=hashlib.sha256(f"test:{channel.pk}".encode()).hexdigest(),
        rule="Test notification",
        severity="low",
        labels={"alertname": "Test notification", "channel": channel.name},
        summary=f"A test from lgmon to the channel {channel.name!r}: delivery works.",
        value=None,
        starts_at=now,
        ends_at=None,
        url=f"{settings.LGMON_PUBLIC_URL}/admin/",
    )


def message_to_json(message: transports.Message) -> dict[str, Any]:
    data = asdict(message)
    for key in ("starts_at", "ends_at"):
        if data[key] is not None:
            data[key] = data[key].isoformat()
    return data


def message_from_json(data: dict[str, Any]) -> transports.Message:
    fields = dict(data)
    for key in ("starts_at", "ends_at"):
        if fields.get(key) is not None:
            fields[key] = datetime.fromisoformat(fields[key])
    return transports.Message(**fields)


# --- delivery ----------------------------------------------------------------------------------


def _due(now: datetime) -> Q:
    stale_claim = Q(status=Notification.Status.SENDING, claimed_until__lt=now)
    return Q(status=Notification.Status.PENDING, next_attempt_at__lte=now) | stale_claim


def deliver_due(now: datetime, limit: int = 200) -> int:
    """Deliver the notifications due at ``now`` (a worker that died mid-send loses its claim
    after a lease); the number of attempts made is returned."""
    ids = list(
        Notification.objects.filter(_due(now))
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    attempts = 0
    for notification_id in ids:
        # Sending takes time: each claim and outcome is stamped when it happens.
        attempts += deliver(notification_id, max(now, timezone.now())) is not None
    return attempts


def backoff(
    attempts: int, retry_after: float | None, rng: random.Random | None = None
) -> timedelta:
    """Delay before attempt ``attempts + 1``: exponential from ``BACKOFF_BASE``, capped, with
    "equal jitter" (half fixed, half random), and never less than the receiver asked for."""
    draw = (rng or random.Random()).random()
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    delay: timedelta = ceiling / 2 + ceiling / 2 * draw
    if retry_after is not None:
        delay = max(delay, min(timedelta(seconds=retry_after), BACKOFF_CAP))
    return delay


def deliver(notification_id: int, now: datetime) -> transports.Outcome | None:
    """Claim one notification, send it and record the outcome; None if it was not ours."""
    lease = timedelta(seconds=settings.LGMON_DELIVERY_TIMEOUT_S * 3 + 30)
    claimed = Notification.objects.filter(_due(now), id=notification_id).update(
        status=Notification.Status.SENDING,
        claimed_until=now + lease,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    notification = Notification.objects.select_related("channel").get(id=notification_id)
    channel = notification.channel
    mine = Notification.objects.filter(
        id=notification_id,
        status=Notification.Status.SENDING,
        attempts=notification.attempts,
    )
    if not channel.enabled and notification.kind != "test":
        outcome = transports.Outcome("permanent", "the channel is disabled")
        mine.update(
            status=Notification.Status.FAILED, last_error=outcome.detail, claimed_until=None
        )
        return outcome
    outcome = transports.send(
        channel.kind,
        channel.config,
        message_from_json(notification.message),
        timeout=settings.LGMON_DELIVERY_TIMEOUT_S,
    )
    if outcome.status == "sent":
        mine.update(status=Notification.Status.SENT, sent_at=now, last_error="", claimed_until=None)
    elif (
        outcome.status == "retry"
        and notification.kind != "test"  # a test is answered at once, never retried later
        and notification.attempts < settings.LGMON_DELIVERY_MAX_ATTEMPTS
    ):
        mine.update(
            status=Notification.Status.PENDING,
            next_attempt_at=now + backoff(notification.attempts, outcome.retry_after),
            last_error=outcome.detail,
            claimed_until=None,
        )
    else:
        reason = outcome.detail
        if outcome.status == "retry" and notification.kind != "test":
            reason = f"gave up after {notification.attempts} attempts: {outcome.detail}"
        mine.update(status=Notification.Status.FAILED, last_error=reason, claimed_until=None)
        if outcome.status == "permanent" and notification.kind != "test":
            NotificationChannel.objects.filter(id=channel.id, enabled=True).update(
                enabled=False,
                disabled_reason=f"{now:%Y-%m-%d %H:%M:%S} UTC: {outcome.detail}",
            )
            logger.warning("notification channel %r disabled: %s", channel.name, outcome.detail)
    return outcome


def send_test(channel: NotificationChannel, now: datetime) -> transports.Outcome:
    """Queue a test message for the channel and deliver it at once; it shows in the delivery
    log like any other. A failed test does not disable the channel."""
    notification = Notification.objects.create(
        channel=channel,
        kind="test",
        message=message_to_json(test_message(channel, now)),
        created_at=now,
        next_attempt_at=now,
    )
    outcome = deliver(notification.id, now)
    assert outcome is not None  # nobody else delivers a row it has only just made due
    return outcome
