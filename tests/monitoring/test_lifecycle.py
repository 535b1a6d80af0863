"""Timeline tests for the alert lifecycle and the notification decision, in the style of
Prometheus' rule unit tests: one row per evaluation tick with the condition's outcome, the
state expected after it, and the notifications one channel is expected to get."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import lifecycle
from monitoring.lifecycle import Channel, Delivered, Event, State, Timing

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RESOLVE = "resolve!"
"""Instead of a condition outcome: a person resolves the alert at this tick."""

# (minute, condition outcome or RESOLVE, expected state, expected notifications)
Tick = tuple[float, bool | str | None, State, list[str]]


@dataclass
class Case:
    ticks: list[Tick]
    timing: Timing = field(default_factory=Timing)
    channel: Channel = field(default_factory=Channel)
    severity: str = "high"
    silenced_minutes: tuple[float, float] | None = None
    acknowledged_from: float | None = None


P, F, I = State.PENDING, State.FIRING, State.INACTIVE  # noqa: E741

CASES: dict[str, Case] = {
    "for 0 fires at once, resolves when it stops, notified once each": Case(
        ticks=[
            (0, False, I, []),
            (0.5, True, F, ["firing"]),
            (1, True, F, []),
            (1.5, True, F, []),
            (2, False, I, ["resolved"]),
            (2.5, False, I, []),
        ]
    ),
    "pending for the for-duration, then firing; no alert storm while it holds": Case(
        timing=Timing(for_=timedelta(minutes=2)),
        ticks=[
            (0, True, P, []),
            (1, True, P, []),
            (2, True, F, ["firing"]),
            (3, True, F, []),
            (4, True, F, []),
        ],
    ),
    "pending that clears before for is never notified": Case(
        timing=Timing(for_=timedelta(minutes=2)),
        ticks=[(0, True, P, []), (1, False, I, []), (2, True, P, []), (3, False, I, [])],
    ),
    "keep_firing_for holds the alert through a short dip": Case(
        timing=Timing(keep_firing_for=timedelta(minutes=2)),
        ticks=[
            (0, True, F, ["firing"]),
            (1, False, F, []),
            (2, True, F, []),
            (3, False, F, []),
            (4, False, I, ["resolved"]),  # 2 min after it last held
        ],
    ),
    "no data keeps the state by default": Case(
        ticks=[
            (0, True, F, ["firing"]),
            (1, None, F, []),
            (2, None, F, []),
            (3, False, I, ["resolved"]),
        ]
    ),
    "no data as ok resolves": Case(
        timing=Timing(no_data="ok"),
        ticks=[(0, True, F, ["firing"]), (1, None, I, ["resolved"])],
    ),
    "no data as alerting fires": Case(
        timing=Timing(no_data="alerting", for_=timedelta(minutes=1)),
        ticks=[(0, None, P, []), (1, None, F, ["firing"])],
    ),
    "repeat while firing after repeat_interval, not before": Case(
        channel=Channel(repeat_interval=timedelta(minutes=10)),
        ticks=[
            (0, True, F, ["firing"]),
            (5, True, F, []),
            (10, True, F, ["repeat"]),
            (15, True, F, []),
            (20, True, F, ["repeat"]),
            (21, False, I, ["resolved"]),
        ],
    ),
    "acknowledged alerts are not repeated but still resolve": Case(
        channel=Channel(repeat_interval=timedelta(minutes=10)),
        acknowledged_from=1,
        ticks=[
            (0, True, F, ["firing"]),
            (10, True, F, []),
            (20, True, F, []),
            (21, False, I, ["resolved"]),
        ],
    ),
    "send_resolved off: only firing": Case(
        channel=Channel(send_resolved=False),
        ticks=[(0, True, F, ["firing"]), (1, False, I, [])],
    ),
    "below the channel's minimum severity: nothing": Case(
        severity="medium",
        channel=Channel(min_severity="high"),
        ticks=[(0, True, F, []), (1, False, I, [])],
    ),
    "silenced: states change, nothing is sent, and no resolved for an unsent firing": Case(
        silenced_minutes=(0, 1.5),
        ticks=[(0, True, F, []), (1, True, F, []), (2, False, I, [])],
    ),
    "a silence that ends while firing lets the firing through, then the resolved": Case(
        silenced_minutes=(0, 1.5),
        channel=Channel(repeat_interval=timedelta(minutes=10)),
        ticks=[
            (0, True, F, []),
            (1, True, F, []),
            (2, True, F, ["firing"]),
            (3, True, F, []),
            (12, True, F, ["repeat"]),
            (13, False, I, ["resolved"]),
        ],
    ),
    "acknowledged before any channel was told: nothing until it resolves": Case(
        silenced_minutes=(0, 1.5),
        acknowledged_from=1,
        ticks=[(0, True, F, []), (2, True, F, []), (3, False, I, [])],
    ),
    "manual resolve while the condition holds starts a new pending episode": Case(
        timing=Timing(for_=timedelta(minutes=1)),
        ticks=[
            (0, True, P, []),
            (1, True, F, ["firing"]),
            (1.5, RESOLVE, I, ["resolved"]),
            (2, True, P, []),
            (3, True, F, ["firing"]),
        ],
    ),
    "flapping is notified once, then held back until it settles": Case(
        timing=Timing(flap_window=timedelta(minutes=10), flap_threshold=4),
        ticks=[
            (0, True, F, ["firing"]),
            (1, False, I, ["resolved"]),
            (2, True, F, ["firing"]),
            (3, False, I, ["flapping"]),  # 4th transition within 10 min
            (4, True, F, []),
            (5, False, I, []),
            (6, True, F, []),
            (7, True, F, []),
            (15, True, F, []),  # the flip at 6 is still within the window
            (16.5, True, F, ["firing"]),  # settled while firing: say so
            (17, False, I, ["resolved"]),
        ],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_timeline(name: str) -> None:
    case = CASES[name]
    alert = lifecycle.Alert()
    delivered = Delivered()
    for minute, outcome, expected_state, expected_sent in case.ticks:
        now = T0 + timedelta(minutes=minute)
        if outcome == RESOLVE:
            step = lifecycle.resolve_manually(alert, now)
        else:
            assert not isinstance(outcome, str)
            step = lifecycle.evaluate(alert, outcome, now, case.timing)
        if Event.PENDING in step.events or (
            Event.FIRING in step.events and alert.state == State.INACTIVE
        ):
            delivered = Delivered()  # a new episode
        silenced = case.silenced_minutes is not None and (
            case.silenced_minutes[0] <= minute < case.silenced_minutes[1]
        )
        acknowledged = case.acknowledged_from is not None and minute >= case.acknowledged_from
        sent = lifecycle.to_send(
            step,
            now=now,
            severity=case.severity,
            channel=case.channel,
            delivered=delivered,
            silenced=silenced,
            acknowledged=acknowledged,
        )
        assert (step.alert.state, sent) == (expected_state, expected_sent), f"at minute {minute}"
        for kind in sent:
            if kind in ("firing", "repeat"):
                delivered = replace(delivered, firing=True, resolved=False, last_at=now)
            elif kind == "resolved":
                delivered = replace(delivered, resolved=True)
        alert = step.alert


def test_pending_to_firing_records_the_episode_times() -> None:
    timing = Timing(for_=timedelta(minutes=5))
    first = lifecycle.evaluate(lifecycle.Alert(), True, T0, timing)
    later = lifecycle.evaluate(first.alert, True, T0 + timedelta(minutes=5), timing)

    assert first.events == (Event.PENDING,)
    assert later.events == (Event.FIRING,)
    assert later.alert.active_at == T0
    assert later.alert.fired_at == T0 + timedelta(minutes=5)
