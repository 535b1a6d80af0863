"""The alert lifecycle and the notification decision, as pure functions over time.

Nothing here touches the database or the clock: the evaluator passes the tick time, what the
rule's condition gave for one label set, and the alert's previous state, and stores what comes
back. This is what the timeline tests drive tick by tick (DESIGN section 5 and 6).

States of one alert (one rule × one label set, keyed by its fingerprint):

- ``inactive`` (never fired, or resolved) → ``pending`` when the condition holds;
  ``pending`` → ``firing`` once it has held for ``for_`` (at once when ``for_`` is zero);
  ``pending`` → ``inactive`` when it stops holding, without any notification.
- ``firing`` → ``inactive`` (event ``resolved``) when it stops holding for longer than
  ``keep_firing_for``.
- No data: ``keep`` changes nothing, ``ok`` counts as not holding, ``alerting`` as holding.
- Flapping: when ``flap_threshold`` firing/resolved transitions fall within ``flap_window``,
  the alert is marked flapping and that is notified once; firing and resolved notifications are
  held back until no transition happened for a whole window (event ``stable``), when the state
  at that moment is notified.
- A manual resolve ends the episode; the next tick starts a new one if the condition holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

NoData = Literal["keep", "ok", "alerting"]


class State(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class Event(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    CLEARED = "cleared"
    """A pending alert whose condition stopped holding before ``for_``: never notified."""
    FLAPPING = "flapping"
    STABLE = "stable"


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass(frozen=True)
class Timing:
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    no_data: NoData = "keep"
    flap_window: timedelta = timedelta(minutes=30)
    flap_threshold: int = 4


@dataclass(frozen=True)
class Alert:
    state: State = State.INACTIVE
    active_at: datetime | None = None
    """When the current episode started (became pending)."""
    fired_at: datetime | None = None
    last_held_at: datetime | None = None
    resolved_at: datetime | None = None
    flips: tuple[datetime, ...] = ()
    """Recent firing and resolved transitions, for flapping detection."""
    flapping: bool = False


@dataclass(frozen=True)
class Step:
    alert: Alert
    events: tuple[Event, ...] = ()


def evaluate(alert: Alert, holds: bool | None, now: datetime, timing: Timing) -> Step:
    """One tick for one alert: ``holds`` is the condition's outcome, None when there was no
    data (or too few samples)."""
    if holds is None:
        if timing.no_data == "keep":
            return _flap_check(Step(alert), now, timing)
        holds = timing.no_data == "alerting"
    events: list[Event] = []
    if holds:
        if alert.state == State.INACTIVE:
            alert = replace(alert, state=State.PENDING, active_at=now, fired_at=None)
            alert = replace(alert, last_held_at=now, resolved_at=None)
            events.append(Event.PENDING)
        else:
            alert = replace(alert, last_held_at=now)
        if alert.state == State.PENDING:
            assert alert.active_at is not None
            if now - alert.active_at >= timing.for_:
                alert = replace(alert, state=State.FIRING, fired_at=now, flips=(*alert.flips, now))
                events.append(Event.FIRING)
    elif alert.state == State.PENDING:
        alert = replace(alert, state=State.INACTIVE, active_at=None)
        events.append(Event.CLEARED)
    elif alert.state == State.FIRING:
        held_at = alert.last_held_at or now
        if now - held_at >= timing.keep_firing_for:
            alert = replace(alert, state=State.INACTIVE, resolved_at=now, flips=(*alert.flips, now))
            events.append(Event.RESOLVED)
    return _flap_check(Step(alert, tuple(events)), now, timing)


def resolve_manually(alert: Alert, now: datetime) -> Step:
    """A person resolved the alert: the episode ends now, whatever the condition says."""
    if alert.state == State.INACTIVE:
        return Step(alert)
    was_firing = alert.state == State.FIRING
    ended = replace(alert, state=State.INACTIVE, active_at=None, resolved_at=now)
    return Step(ended, (Event.RESOLVED,) if was_firing else (Event.CLEARED,))


def _flap_check(step: Step, now: datetime, timing: Timing) -> Step:
    alert = step.alert
    recent = tuple(t for t in alert.flips if now - t < timing.flap_window)
    events = step.events
    if not alert.flapping and len(recent) >= timing.flap_threshold:
        alert = replace(alert, flips=recent, flapping=True)
        events = (*events, Event.FLAPPING)
    elif alert.flapping and not recent:
        alert = replace(alert, flips=recent, flapping=False)
        events = (*events, Event.STABLE)
    elif recent != alert.flips:
        alert = replace(alert, flips=recent)
    return Step(alert, events)


# The notification decision ------------------------------------------------------------------

Kind = Literal["firing", "resolved", "repeat", "flapping"]


@dataclass(frozen=True)
class Channel:
    min_severity: str = "low"
    send_resolved: bool = True
    repeat_interval: timedelta | None = timedelta(hours=4)


@dataclass(frozen=True)
class Delivered:
    """What this channel has been sent for the current episode."""

    firing: bool = False
    """A firing (or repeat) notification is sent or on its way (not given up)."""
    last_at: datetime | None = None
    """When the last firing or repeat notification was queued, whatever became of it."""
    resolved: bool = False


def to_send(
    step: Step,
    *,
    now: datetime,
    severity: str,
    channel: Channel,
    delivered: Delivered,
    silenced: bool = False,
    acknowledged: bool = False,
) -> list[Kind]:
    """What one channel should be sent after one tick for one alert."""
    if silenced or SEVERITY_RANK[severity] < SEVERITY_RANK[channel.min_severity]:
        return []
    alert, events = step.alert, step.events
    if Event.FLAPPING in events:
        return ["flapping"]
    if Event.STABLE in events:
        # Settled: tell the state it settled in, unless the channel already knows it.
        if alert.state == State.FIRING and not delivered.firing:
            return ["firing"]
        if alert.state == State.INACTIVE and delivered.firing and not delivered.resolved:
            return ["resolved"] if channel.send_resolved else []
        return []
    if alert.flapping:
        return []
    if Event.FIRING in events:
        return ["firing"]
    if Event.RESOLVED in events:
        return ["resolved"] if channel.send_resolved and delivered.firing else []
    if alert.state != State.FIRING or acknowledged:
        return []
    if delivered.last_at is None:
        # Firing, and this channel was never told: a silence ended, or the channel is new.
        return ["firing"]
    if channel.repeat_interval is not None and now - delivered.last_at >= channel.repeat_interval:
        return ["repeat"]
    return []
