"""The alerting admin: alerts people act on, rules and silences whose model validation shows
as form errors, and notification channels whose secrets never reach a page."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from monitoring.models import Alert, AlertRule, Notification, NotificationChannel, Silence
from tests.fakes import FakeReceiver, Reply

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SLACK_URL_TOKEN = "T0AAA/B0BBB/xyzzyToken123"
SIGNING_SECRET = "s3cr3t-signing-value"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.fixture
def rule() -> AlertRule:
    return AlertRule.objects.create(
        name="Errors", metric="error_rate", threshold=0.1, severity="high"
    )


def make_alert(
    rule: AlertRule, state: str = "firing", *, graph: str = "support-bot", **fields: Any
) -> Alert:
    labels = {"alertname": rule.name, "severity": rule.severity, "graph": graph}
    moments: dict[str, Any] = {
        "firing": {"active_at": NOW, "fired_at": NOW, "last_held_at": NOW, "episode": 1},
        "pending": {"active_at": NOW, "last_held_at": NOW, "episode": 1},
        "inactive": {"resolved_at": NOW, "episode": 1},
    }[state]
    values: dict[str, Any] = {
        "labels": labels,
        "value": 0.25,
        "last_evaluated_at": NOW,
        **moments,
        **fields,
    }
    fingerprint = hashlib.sha256(json.dumps([rule.id, sorted(labels.items())]).encode())
    return Alert.objects.create(
        rule=rule, fingerprint=fingerprint.hexdigest(), state=state, **values
    )


def run_action(client: Client, model: str, action: str, *objects: Any) -> Any:
    return client.post(
        reverse(f"admin:monitoring_{model}_changelist"),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def change_form_errors(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 200, "an invalid form re-renders the page"
    return dict(response.context["adminform"].form.errors)


# --- alerts --------------------------------------------------------------------------------


def test_alert_list_puts_firing_alerts_first_with_compact_labels(
    admin_client_: Client, rule: AlertRule
) -> None:
    make_alert(rule, "inactive", graph="old")
    make_alert(rule, "pending", graph="warming")
    make_alert(rule, "firing", graph="support-bot", acknowledged_at=NOW, acknowledged_by="bob")

    response = admin_client_.get(reverse("admin:monitoring_alert_changelist"))

    assert response.status_code == 200
    assert [a.state for a in response.context["cl"].result_list] == [
        "firing",
        "pending",
        "inactive",
    ]
    content = response.content.decode()
    # alertname and severity are left out: the rule and severity columns show them.
    assert '<td class="field-label_text">graph=support-bot</td>' in content
    assert '<td class="field-acknowledged">by bob</td>' in content


def test_acknowledge_action_acknowledges_open_alerts_only(
    admin_client_: Client, rule: AlertRule
) -> None:
    firing = make_alert(rule, "firing")
    resolved = make_alert(rule, "inactive", graph="billing")

    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        response = run_action(admin_client_, "alert", "acknowledge", firing, resolved)

    assert messages_of(response) == [
        "Acknowledged 1 alert(s). 1 skipped: not open or acknowledged already."
    ]
    firing.refresh_from_db()
    resolved.refresh_from_db()
    assert (firing.acknowledged_by, firing.acknowledged_at) == ("alice", NOW + timedelta(minutes=5))
    assert resolved.acknowledged_at is None


def test_resolve_action_resolves_and_queues_resolved_notifications(
    admin_client_: Client, rule: AlertRule
) -> None:
    firing = make_alert(rule, "firing")
    channel = NotificationChannel.objects.create(
        name="ops", kind="webhook", config={"url": "https://hooks.example.com/x"}
    )
    Notification.objects.create(
        alert=firing, channel=channel, episode=1, kind="firing", message={}, status="sent"
    )

    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        response = run_action(admin_client_, "alert", "resolve", firing)

    assert messages_of(response) == ["Resolved 1 alert(s)."]
    firing.refresh_from_db()
    assert (firing.state, firing.resolved_by) == ("inactive", "alice")
    assert firing.resolved_at == NOW + timedelta(minutes=5)
    queued = Notification.objects.get(alert=firing, kind="resolved")
    assert (queued.channel, queued.status, queued.episode) == (channel, "pending", 1)


def test_resolving_an_alert_that_is_not_open_is_reported(
    admin_client_: Client, rule: AlertRule
) -> None:
    resolved = make_alert(rule, "inactive")
    response = run_action(admin_client_, "alert", "resolve", resolved)
    assert messages_of(response) == ["Resolved 0 alert(s). 1 skipped: not open."]


@pytest.mark.parametrize(
    ("action", "duration", "text"),
    [
        ("silence_1h", timedelta(hours=1), "1 hour"),
        ("silence_24h", timedelta(hours=24), "24 hours"),
    ],
)
def test_silence_actions_silence_exactly_the_alerts_labels(
    admin_client_: Client, rule: AlertRule, action: str, duration: timedelta, text: str
) -> None:
    alert = make_alert(rule, "firing")

    with time_machine.travel(NOW, tick=False):
        response = run_action(admin_client_, "alert", action, alert)

    until = NOW + duration
    assert messages_of(response) == [
        f"Silenced 1 alert(s) for {text} (until {until:%Y-%m-%d %H:%M} UTC)."
    ]
    silence = Silence.objects.get()
    assert (silence.starts_at, silence.ends_at, silence.created_by) == (NOW, until, "alice")
    assert {(m["label"], m["op"], m["value"]) for m in silence.matchers} == {
        ("alertname", "=", "Errors"),
        ("severity", "=", "high"),
        ("graph", "=", "support-bot"),
    }


def test_alert_actions_need_the_change_permission(
    client: Client, django_user_model: Any, rule: AlertRule
) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client.force_login(viewer)
    alert = make_alert(rule, "firing")

    page = client.get(reverse("admin:monitoring_alert_changelist"))
    response = run_action(client, "alert", "resolve", alert)

    assert page.status_code == 200
    assert page.context["action_form"] is None
    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.state == "firing"


def test_alert_page_is_read_only_and_shows_its_latest_notifications(
    admin_client_: Client, rule: AlertRule
) -> None:
    alert = make_alert(rule, "firing")
    channel = NotificationChannel.objects.create(name="pager", kind="pagerduty", config={})
    for minute in range(55):
        Notification.objects.create(
            alert=alert,
            channel=channel,
            episode=1,
            kind="repeat" if minute else "firing",
            message={},
            status="failed",
            attempts=3,
            last_error=f"HTTP 503 at minute {minute}",
            created_at=NOW + timedelta(minutes=minute),
        )

    response = admin_client_.get(reverse("admin:monitoring_alert_change", args=[alert.pk]))

    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}  # nothing is editable
    (inline,) = response.context["inline_admin_formsets"]
    assert len(inline.formset.forms) == 50
    content = response.content.decode()
    assert "HTTP 503 at minute 54" in content
    assert "HTTP 503 at minute 4<" not in content  # the five oldest are left out
    assert "pager (PagerDuty Events v2)" in content


# --- rules ---------------------------------------------------------------------------------


def rule_form(**changes: str) -> dict[str, str]:
    data = {
        "name": "Slow answers",
        "description": "",
        "enabled": "on",
        "severity": "medium",
        "labels": "{}",
        "metric": "latency_p95",
        "custom_metric": "",
        "scope": "all",
        "graph": "",
        "node": "",
        "window": "00:10:00",
        "comparison": "gt",
        "threshold": "2000",
        "min_samples": "1",
        "for_duration": "0",
        "keep_firing_for": "0",
        "no_data": "keep",
    }
    data.update(changes)
    return data


def test_rule_form_saves_a_sound_rule(admin_client_: Client) -> None:
    response = admin_client_.post(reverse("admin:monitoring_alertrule_add"), rule_form())
    assert response.status_code == 302
    saved = AlertRule.objects.get(name="Slow answers")
    assert (saved.metric, saved.threshold, saved.window) == (
        "latency_p95",
        2000.0,
        timedelta(minutes=10),
    )


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        (
            {"scope": "node", "graph": "support-bot"},
            {"node": ["A one-node scope needs the node's name."]},
        ),
        (
            {"metric": "error_rate", "threshold": "5"},
            {"threshold": ["An error rate is a fraction between 0 and 1 (0.1 = 10%)."]},
        ),
        (
            {"metric": "custom", "scope": "each_graph"},
            {
                "custom_metric": ["A custom metric needs the metric point name."],
                "scope": [
                    "System and custom metrics give one alert per label set of their points; "
                    "'each graph' and 'each node' apply to run metrics only."
                ],
            },
        ),
        (
            {"metric": "error_rate", "threshold": ""},  # the model must not see None
            {"threshold": ["This field is required."]},
        ),
        ({"window": "0"}, {"window": ["The window must be longer than zero."]}),
    ],
)
def test_rule_form_shows_the_models_problems_on_their_fields(
    admin_client_: Client, changes: dict[str, str], errors: dict[str, list[str]]
) -> None:
    response = admin_client_.post(reverse("admin:monitoring_alertrule_add"), rule_form(**changes))
    assert change_form_errors(response) == errors
    assert not AlertRule.objects.filter(name="Slow answers").exists()


def test_rule_health_is_on_the_list_and_its_error_on_the_page(admin_client_: Client) -> None:
    broken = AlertRule.objects.create(
        name="Broken",
        metric="custom",
        custom_metric="queue_depth",
        threshold=10,
        health="error",
        last_error="OperationalError: no such table",
    )

    listing = admin_client_.get(reverse("admin:monitoring_alertrule_changelist"))
    page = admin_client_.get(reverse("admin:monitoring_alertrule_change", args=[broken.pk]))

    rows = {r.name: r for r in listing.context["cl"].result_list}
    assert rows["Broken"].health == "error"
    assert "OperationalError: no such table" in page.content.decode()


# --- silences ------------------------------------------------------------------------------


def silence_form(matchers: Any, **changes: str) -> dict[str, str]:
    data = {
        "matchers": json.dumps(matchers),
        "starts_at_0": "2026-11-24",
        "starts_at_1": "12:00:00",
        "ends_at_0": "2026-11-24",
        "ends_at_1": "14:00:00",
        "comment": "deploy",
    }
    data.update(changes)
    return data


def test_silence_form_records_who_created_it(admin_client_: Client) -> None:
    matchers = [{"label": "graph", "op": "=~", "value": "support-.*"}]
    response = admin_client_.post(reverse("admin:monitoring_silence_add"), silence_form(matchers))
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert (silence.matchers, silence.created_by) == (matchers, "alice")
    assert (silence.starts_at, silence.ends_at) == (NOW, NOW + timedelta(hours=2))


@pytest.mark.parametrize(
    ("matchers", "changes", "field", "message"),
    [
        (
            [{"label": "graph", "op": "=~", "value": "support-(bot"}],
            {},
            "matchers",
            "Matcher 1: invalid regular expression",
        ),
        ([{"label": "graph", "op": "~", "value": "x"}], {}, "matchers", 'Matcher 1: "op" must'),
        ({"label": "graph", "value": "x"}, {}, "matchers", "A non-empty list of matchers"),
        (
            [{"label": "graph", "value": "x"}],
            {"ends_at_1": "11:00:00"},
            "ends_at",
            "A silence must end after it starts.",
        ),
    ],
)
def test_silence_form_shows_matcher_problems(
    admin_client_: Client, matchers: Any, changes: dict[str, str], field: str, message: str
) -> None:
    response = admin_client_.post(
        reverse("admin:monitoring_silence_add"), silence_form(matchers, **changes)
    )
    errors = change_form_errors(response)
    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    assert not Silence.objects.exists()


def test_silence_list_shows_which_are_active_now(admin_client_: Client) -> None:
    matchers = [{"label": "graph", "op": "=", "value": "support-bot"}]
    Silence.objects.create(matchers=matchers, starts_at=NOW - timedelta(hours=1), ends_at=NOW)
    Silence.objects.create(
        matchers=matchers, starts_at=NOW - timedelta(hours=1), ends_at=NOW + timedelta(hours=1)
    )
    url = reverse("admin:monitoring_silence_changelist")

    with time_machine.travel(NOW, tick=False):
        active = admin_client_.get(url, {"state": "active"})
        everything = admin_client_.get(url)

    assert [s.ends_at for s in active.context["cl"].result_list] == [NOW + timedelta(hours=1)]
    content = everything.content.decode()
    assert content.count('alt="True"') == 1
    assert content.count('alt="False"') == 1
    assert escape("graph='support-bot'") in content


# --- notification channels -----------------------------------------------------------------


INLINE = {
    "notifications-TOTAL_FORMS": "0",
    "notifications-INITIAL_FORMS": "0",
    "notifications-MIN_NUM_FORMS": "0",
    "notifications-MAX_NUM_FORMS": "1000",
}


def channel_form(kind: str, **changes: str) -> dict[str, str]:
    data = {
        "name": "ops",
        "kind": kind,
        "enabled": "on",
        "url": "",
        "secret": "",
        "routing_key": "",
        "to": "",
        "min_severity": "low",
        "send_resolved": "on",
        "repeat_interval": "04:00:00",
    }
    data.update(changes)
    return data


def add_channel(client: Client, kind: str, **changes: str) -> Any:
    return client.post(
        reverse("admin:monitoring_notificationchannel_add"), channel_form(kind, **changes)
    )


def edit_channel(client: Client, channel: NotificationChannel, **changes: str) -> Any:
    return client.post(
        reverse("admin:monitoring_notificationchannel_change", args=[channel.pk]),
        {**channel_form(channel.kind, name=channel.name), **changes, **INLINE},
    )


@pytest.mark.parametrize(
    ("kind", "fields", "config"),
    [
        (
            "slack",
            {"url": f"https://hooks.slack.com/services/{SLACK_URL_TOKEN}"},
            {"url": f"https://hooks.slack.com/services/{SLACK_URL_TOKEN}"},
        ),
        (
            "webhook",
            {"url": "https://example.com/hook", "secret": SIGNING_SECRET},
            {"url": "https://example.com/hook", "secret": SIGNING_SECRET},
        ),
        ("webhook", {"url": "http://example.com/hook"}, {"url": "http://example.com/hook"}),
        ("pagerduty", {"routing_key": ROUTING_KEY}, {"routing_key": ROUTING_KEY}),
        (
            "pagerduty",
            {"routing_key": ROUTING_KEY, "url": "https://events.eu.pagerduty.com/v2/enqueue"},
            {"routing_key": ROUTING_KEY, "url": "https://events.eu.pagerduty.com/v2/enqueue"},
        ),
        (
            "email",
            {"to": "a@example.com, b@example.com\nc@example.com\n\na@example.com"},
            {"to": ["a@example.com", "b@example.com", "c@example.com"]},
        ),
        # fields of other kinds are ignored
        ("email", {"to": "a@example.com", "routing_key": "x"}, {"to": ["a@example.com"]}),
    ],
)
def test_channel_form_assembles_the_config_per_kind(
    admin_client_: Client, kind: str, fields: dict[str, str], config: dict[str, Any]
) -> None:
    response = add_channel(admin_client_, kind, **fields)
    assert response.status_code == 302
    assert NotificationChannel.objects.get(name="ops").config == config


@pytest.mark.parametrize(
    ("kind", "fields", "errors"),
    [
        ("slack", {}, {"url": ["A Slack channel needs its incoming webhook URL."]}),
        ("webhook", {}, {"url": ["A webhook channel needs the URL to POST to."]}),
        (
            "webhook",
            {"url": "ftp://example.com/hook"},
            {"url": ["Enter a full http:// or https:// URL."]},
        ),
        ("slack", {"url": "hooks.slack.com/x"}, {"url": ["Enter a full http:// or https:// URL."]}),
        (
            "pagerduty",
            {"url": "https://events.pagerduty.com/v2/enqueue"},
            {"routing_key": ["A PagerDuty channel needs its routing key."]},
        ),
        ("email", {}, {"to": ["An email channel needs at least one recipient."]}),
        (
            "email",
            {"to": "ops@example.com, not-an-address"},
            {"to": ["Not a valid email address: 'not-an-address'."]},
        ),
    ],
)
def test_channel_form_rejects_incomplete_config_with_field_errors(
    admin_client_: Client, kind: str, fields: dict[str, str], errors: dict[str, list[str]]
) -> None:
    response = add_channel(admin_client_, kind, **fields)
    assert change_form_errors(response) == errors
    assert not NotificationChannel.objects.exists()


def test_an_invalid_secret_url_is_not_echoed_back(admin_client_: Client) -> None:
    response = add_channel(admin_client_, "slack", url=f"htps://hooks.slack.com/{SLACK_URL_TOKEN}")
    assert "url" in change_form_errors(response)
    assert SLACK_URL_TOKEN not in response.content.decode()


@pytest.fixture
def webhook() -> NotificationChannel:
    return NotificationChannel.objects.create(
        name="ops",
        kind="webhook",
        config={"url": f"https://hooks.example.com/{SLACK_URL_TOKEN}", "secret": SIGNING_SECRET},
    )


def test_stored_secrets_never_reach_the_change_page(
    admin_client_: Client, webhook: NotificationChannel
) -> None:
    pager = NotificationChannel.objects.create(
        name="pager", kind="pagerduty", config={"routing_key": ROUTING_KEY}
    )

    pages = [
        admin_client_.get(reverse("admin:monitoring_notificationchannel_change", args=[pk]))
        for pk in (webhook.pk, pager.pk)
    ]
    pages.append(admin_client_.get(reverse("admin:monitoring_notificationchannel_changelist")))

    for page in pages:
        assert page.status_code == 200
        content = page.content.decode()
        for secret in (SLACK_URL_TOKEN, SIGNING_SECRET, ROUTING_KEY):
            assert secret not in content
    assert "Stored: https://hooks.example.com/…" in pages[0].content.decode()


def test_blank_secret_inputs_keep_the_stored_values(
    admin_client_: Client, webhook: NotificationChannel
) -> None:
    response = edit_channel(admin_client_, webhook, min_severity="high")
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.config == {
        "url": f"https://hooks.example.com/{SLACK_URL_TOKEN}",
        "secret": SIGNING_SECRET,
    }
    assert webhook.min_severity == "high"


def test_new_secret_inputs_replace_and_remove_the_stored_values(
    admin_client_: Client, webhook: NotificationChannel
) -> None:
    response = edit_channel(admin_client_, webhook, url="https://new.example.com/hook")
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.config == {"url": "https://new.example.com/hook", "secret": SIGNING_SECRET}

    response = edit_channel(admin_client_, webhook, remove_secret="on")
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.config == {"url": "https://new.example.com/hook"}


def test_changing_the_kind_does_not_carry_stored_secrets_over(
    admin_client_: Client, webhook: NotificationChannel
) -> None:
    response = edit_channel(admin_client_, webhook, kind="pagerduty")
    assert change_form_errors(response) == {
        "routing_key": ["A PagerDuty channel needs its routing key."]
    }

    response = edit_channel(admin_client_, webhook, kind="pagerduty", routing_key=ROUTING_KEY)
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.config == {"routing_key": ROUTING_KEY}  # no webhook URL as PagerDuty's


def test_enabling_a_channel_clears_why_it_was_disabled(
    admin_client_: Client, webhook: NotificationChannel
) -> None:
    NotificationChannel.objects.filter(pk=webhook.pk).update(
        enabled=False, disabled_reason="2026-11-24 12:00:00 UTC: HTTP 404"
    )
    webhook.refresh_from_db()

    response = edit_channel(admin_client_, webhook, enabled="on")

    assert response.status_code == 302
    webhook.refresh_from_db()
    assert (webhook.enabled, webhook.disabled_reason) == (True, "")


def test_saving_a_disabled_channel_keeps_the_reason(
    admin_client_: Client, webhook: NotificationChannel
) -> None:
    NotificationChannel.objects.filter(pk=webhook.pk).update(
        enabled=False, disabled_reason="HTTP 404"
    )
    webhook.refresh_from_db()
    data = {**channel_form("webhook"), **INLINE}
    del data["enabled"]
    url = reverse("admin:monitoring_notificationchannel_change", args=[webhook.pk])
    assert admin_client_.post(url, data).status_code == 302
    webhook.refresh_from_db()
    assert (webhook.enabled, webhook.disabled_reason) == (False, "HTTP 404")


def test_send_test_notification_delivers_to_the_channel(
    admin_client_: Client, receiver: FakeReceiver, allow_private: None
) -> None:
    channel = NotificationChannel.objects.create(
        name="ops", kind="webhook", config={"url": receiver.url("/hook")}
    )

    response = run_action(admin_client_, "notificationchannel", "send_test_notification", channel)

    assert messages_of(response) == ["ops: test notification sent (HTTP 200)."]
    (request,) = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.json()["kind"] == "test"
    logged = Notification.objects.get(channel=channel)
    assert (logged.kind, logged.status, logged.attempts) == ("test", "sent", 1)


@pytest.mark.parametrize("status", [500, 404])
def test_a_failed_test_notification_shows_why_and_keeps_the_channel_enabled(
    admin_client_: Client,
    receiver: FakeReceiver,
    allow_private: None,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    url = receiver.url(f"/services/{SLACK_URL_TOKEN}")
    channel = NotificationChannel.objects.create(name="team", kind="slack", config={"url": url})
    receiver.reply(Reply(status=status, body=f"no such hook {url}".encode()))

    with caplog.at_level(logging.DEBUG):
        response = run_action(
            admin_client_, "notificationchannel", "send_test_notification", channel
        )

    (message,) = messages_of(response)
    assert message.startswith(f"team: test notification failed: HTTP {status}: no such hook")
    assert len(receiver.requests) == 1
    channel.refresh_from_db()
    assert (channel.enabled, channel.disabled_reason) == (True, "")
    assert SLACK_URL_TOKEN not in response.content.decode()
    assert SLACK_URL_TOKEN not in caplog.text


def test_send_test_notification_reports_each_channel(
    admin_client_: Client, receiver: FakeReceiver, allow_private: None
) -> None:
    good = NotificationChannel.objects.create(
        name="a-good", kind="webhook", config={"url": receiver.url("/ok")}
    )
    bad = NotificationChannel.objects.create(name="b-bad", kind="pagerduty", config={})

    response = run_action(admin_client_, "notificationchannel", "send_test_notification", good, bad)

    assert messages_of(response) == [
        "a-good: test notification sent (HTTP 200).",
        "b-bad: test notification failed: pagerduty channel needs a 'routing_key'",
    ]


def test_channel_page_shows_the_latest_deliveries(
    admin_client_: Client, webhook: NotificationChannel, rule: AlertRule
) -> None:
    alert = make_alert(rule, "firing")
    for minute in range(60):
        Notification.objects.create(
            alert=alert,
            channel=webhook,
            episode=1,
            kind="repeat",
            message={},
            status="pending",
            attempts=2,
            last_error=f"network error at minute {minute}",
            created_at=NOW + timedelta(minutes=minute),
            next_attempt_at=NOW + timedelta(minutes=minute + 1),
        )

    response = admin_client_.get(
        reverse("admin:monitoring_notificationchannel_change", args=[webhook.pk])
    )

    (inline,) = response.context["inline_admin_formsets"]
    shown = [form.instance.last_error for form in inline.formset.forms]
    assert len(shown) == 50
    assert shown[0] == "network error at minute 59"
    assert shown[-1] == "network error at minute 10"
    assert "Errors {" in response.content.decode()  # the alert, by rule and labels


def test_new_channel_page_has_no_delivery_log(admin_client_: Client) -> None:
    response = admin_client_.get(reverse("admin:monitoring_notificationchannel_add"))
    assert response.status_code == 200
    assert response.context["inline_admin_formsets"] == []
