"""The alerts API: listing and filtering with the read scope, resolving and acknowledging with
the manage scope."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from monitoring.models import Alert, AlertRule, Notification, NotificationChannel
from tests.conftest import key_client

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=7)


@pytest.fixture(autouse=True)
def _frozen_clock() -> Any:
    with time_machine.travel(LATER, tick=False):
        yield


@pytest.fixture
def manager() -> APIClient:
    return key_client("read", "manage", name="ops-bot")


def make_rule(name: str = "Errors", severity: str = "high") -> AlertRule:
    return AlertRule.objects.create(
        name=name, metric="error_rate", threshold=0.1, severity=severity
    )


def make_alert(rule: AlertRule, state: str = "firing", **labels: str) -> Alert:
    labels = {"alertname": rule.name, "severity": rule.severity, **labels}
    moments: dict[str, Any] = {
        "firing": {"active_at": NOW, "fired_at": NOW, "last_held_at": NOW},
        "pending": {"active_at": NOW, "last_held_at": NOW},
        "inactive": {"resolved_at": NOW},
    }[state]
    fingerprint = hashlib.sha256(json.dumps([rule.id, sorted(labels.items())]).encode())
    return Alert.objects.create(
        rule=rule,
        fingerprint=fingerprint.hexdigest(),
        labels=labels,
        state=state,
        episode=1,
        value=0.3,
        last_evaluated_at=NOW,
        **moments,
    )


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- reading -------------------------------------------------------------------------------


def test_it_lists_alerts_newest_first_with_their_fields(reader_client: APIClient) -> None:
    rule = make_rule()
    older = make_alert(rule, "inactive", graph="billing")
    newer = make_alert(rule, "firing", graph="support-bot")

    response = reader_client.get("/api/v1/alerts/")

    assert ids(response) == [newer.id, older.id]
    assert response.json()["results"][0] == {
        "id": newer.id,
        "fingerprint": newer.fingerprint,
        "rule": "Errors",
        "severity": "high",
        "state": "firing",
        "labels": {"alertname": "Errors", "severity": "high", "graph": "support-bot"},
        "value": 0.3,
        "episode": 1,
        "active_at": "2026-11-24T12:00:00Z",
        "fired_at": "2026-11-24T12:00:00Z",
        "resolved_at": None,
        "resolved_by": "",
        "last_evaluated_at": "2026-11-24T12:00:00Z",
        "acknowledged_at": None,
        "acknowledged_by": "",
        "flapping": False,
    }


def test_it_pages_alerts_with_a_cursor(reader_client: APIClient) -> None:
    rule = make_rule()
    alerts = [make_alert(rule, graph=f"g{i}") for i in range(5)]

    first = reader_client.get("/api/v1/alerts/", {"page_size": 3}).json()
    second = reader_client.get(first["next"]).json()

    assert [row["id"] for row in first["results"] + second["results"]] == [
        alert.id for alert in reversed(alerts)
    ]
    assert second["next"] is None


@pytest.fixture
def assorted() -> dict[str, Alert]:
    errors, slow = make_rule("Errors", "high"), make_rule("Slow", "low")
    return {
        "bot-firing": make_alert(errors, "firing", graph="support-bot"),
        "billing-pending": make_alert(errors, "pending", graph="billing"),
        "old": make_alert(errors, "inactive", graph="legacy"),
        "node-firing": make_alert(slow, "firing", graph="support-bot", node="answer"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=firing", ["node-firing", "bot-firing"]),
        ("state=firing&state=pending", ["node-firing", "billing-pending", "bot-firing"]),
        ("state=firing,pending", ["node-firing", "billing-pending", "bot-firing"]),
        ("severity=low", ["node-firing"]),
        ("severity=high,critical&state=inactive", ["old"]),
        ("rule=Errors&state=pending", ["billing-pending"]),
        ("rule=Nope", []),
        ("label=graph=support-bot", ["node-firing", "bot-firing"]),
        ("label=graph=support-bot&label=node=answer", ["node-firing"]),
        ("label=graph=support-bot&label=alertname=Errors", ["bot-firing"]),
        ("label=node=", ["old", "billing-pending", "bot-firing"]),  # a missing label is empty
        ("label=graph=support-bot&state=pending", []),
    ],
)
def test_it_filters_alerts(
    reader_client: APIClient, assorted: dict[str, Alert], query: str, expected: list[str]
) -> None:
    response = reader_client.get(f"/api/v1/alerts/?{query}")
    assert ids(response) == [assorted[name].id for name in expected]


def test_it_finds_an_alert_by_fingerprint(
    reader_client: APIClient, assorted: dict[str, Alert]
) -> None:
    wanted = assorted["old"]
    response = reader_client.get("/api/v1/alerts/", {"fingerprint": wanted.fingerprint.upper()})
    assert ids(response) == [wanted.id]


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        (
            "state=firing,burning",
            {"state": ["Unknown state 'burning': use inactive, pending, firing."]},
        ),
        (
            "severity=urgent",
            {"severity": ["Unknown severity 'urgent': use low, medium, high, critical."]},
        ),
        ("label=graph", {"label": ["'graph' is not key=value, e.g. label=graph=support-bot."]}),
        ("label==x", {"label": ["'=x' is not key=value, e.g. label=graph=support-bot."]}),
        ("fingerprint=abc", {"fingerprint": ["A fingerprint is 64 hexadecimal characters."]}),
    ],
)
def test_it_rejects_bad_filters_with_field_messages(
    reader_client: APIClient, query: str, errors: dict[str, list[str]]
) -> None:
    response = reader_client.get(f"/api/v1/alerts/?{query}")
    assert response.status_code == 400
    assert response.json() == errors


def test_it_reads_one_alert(reader_client: APIClient) -> None:
    alert = make_alert(make_rule(), graph="support-bot")

    response = reader_client.get(f"/api/v1/alerts/{alert.id}/")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["rule"]) == (alert.id, "Errors")
    assert reader_client.get(f"/api/v1/alerts/{alert.id + 1}/").status_code == 404
    assert reader_client.get("/api/v1/alerts/nope/").status_code == 404


def test_reading_alerts_needs_the_read_scope(app_client: APIClient) -> None:
    alert = make_alert(make_rule())
    assert APIClient().get("/api/v1/alerts/").status_code == 401
    assert app_client.get("/api/v1/alerts/").status_code == 403
    assert app_client.get(f"/api/v1/alerts/{alert.id}/").status_code == 403


# --- acting --------------------------------------------------------------------------------


@pytest.fixture
def told_channel() -> NotificationChannel:
    return NotificationChannel.objects.create(
        name="ops", kind="webhook", config={"url": "https://hooks.example.com/x"}
    )


def test_resolving_a_firing_alert_queues_resolved_notifications(
    manager: APIClient, told_channel: NotificationChannel
) -> None:
    alert = make_alert(make_rule(), "firing", graph="support-bot")
    Notification.objects.create(
        alert=alert, channel=told_channel, episode=1, kind="firing", message={}, status="sent"
    )
    untold = NotificationChannel.objects.create(
        name="quiet", kind="webhook", config={"url": "https://hooks.example.com/y"}
    )

    response = manager.post(f"/api/v1/alerts/{alert.id}/resolve/")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["state"], body["resolved_by"]) == (alert.id, "inactive", "key:ops-bot")
    assert body["resolved_at"] == "2026-11-24T12:07:00Z"
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by, alert.resolved_at) == ("inactive", "key:ops-bot", LATER)
    resolved = Notification.objects.get(kind="resolved")
    assert (resolved.alert, resolved.channel, resolved.episode) == (alert, told_channel, 1)
    assert (resolved.status, resolved.message["kind"]) == ("pending", "resolved")
    assert not Notification.objects.filter(channel=untold).exists()  # it never heard it fired


def test_resolving_a_pending_alert_sends_nothing(
    manager: APIClient, told_channel: NotificationChannel
) -> None:
    alert = make_alert(make_rule(), "pending", graph="support-bot")

    response = manager.post(f"/api/v1/alerts/{alert.id}/resolve/")

    assert response.status_code == 200
    assert response.json()["state"] == "inactive"
    assert not Notification.objects.exists()


def test_resolving_an_alert_that_is_not_open_is_a_conflict(manager: APIClient) -> None:
    alert = make_alert(make_rule(), "inactive")

    response = manager.post(f"/api/v1/alerts/{alert.id}/resolve/")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Alert {alert.id} is not open (its state is inactive): nothing to resolve."
    }
    alert.refresh_from_db()
    assert (alert.resolved_by, alert.resolved_at) == ("", NOW)


def test_acknowledging_an_alert_records_who_and_when(manager: APIClient) -> None:
    alert = make_alert(make_rule(), "firing")

    response = manager.post(f"/api/v1/alerts/{alert.id}/acknowledge/")
    again = manager.post(f"/api/v1/alerts/{alert.id}/acknowledge/")

    assert response.status_code == 200
    body = response.json()
    assert (body["acknowledged_by"], body["acknowledged_at"]) == (
        "key:ops-bot",
        "2026-11-24T12:07:00Z",
    )
    assert body["state"] == "firing"
    assert again.status_code == 409
    assert again.json() == {
        "detail": f"Alert {alert.id} was acknowledged already by key:ops-bot "
        "at 2026-11-24T12:07:00+00:00."
    }


def test_acknowledging_an_alert_that_is_not_open_is_a_conflict(manager: APIClient) -> None:
    alert = make_alert(make_rule(), "inactive")

    response = manager.post(f"/api/v1/alerts/{alert.id}/acknowledge/")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Alert {alert.id} is not open (its state is inactive): nothing to acknowledge."
    }
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


@pytest.mark.parametrize("verb", ["resolve", "acknowledge"])
def test_acting_on_alerts_needs_the_manage_scope(reader_client: APIClient, verb: str) -> None:
    alert = make_alert(make_rule(), "firing")

    forbidden = reader_client.post(f"/api/v1/alerts/{alert.id}/{verb}/")
    anonymous = APIClient().post(f"/api/v1/alerts/{alert.id}/{verb}/")

    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "This API key lacks the 'manage' scope."}
    assert anonymous.status_code == 401
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_at) == ("firing", None)


@pytest.mark.parametrize("verb", ["resolve", "acknowledge"])
def test_acting_on_a_missing_alert_is_not_found(manager: APIClient, verb: str) -> None:
    assert manager.post(f"/api/v1/alerts/999999/{verb}/").status_code == 404


def test_a_signed_in_staff_user_acts_under_their_username(admin_user: Any) -> None:
    client = APIClient()
    client.force_login(admin_user)
    alert = make_alert(make_rule(), "firing")

    acknowledged = client.post(f"/api/v1/alerts/{alert.id}/acknowledge/")
    resolved = client.post(f"/api/v1/alerts/{alert.id}/resolve/")

    assert acknowledged.json()["acknowledged_by"] == "alice"
    assert resolved.json()["resolved_by"] == "alice"
