"""The alerting tables as migrated: the seed's default rules exist and are editable data."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from monitoring.models import AlertRule, NotificationChannel

pytestmark = pytest.mark.django_db


def test_migration_creates_the_seed_default_rules() -> None:
    rules = {rule.name: rule for rule in AlertRule.objects.all()}

    errors = rules["High error rate"]
    assert (errors.metric, errors.scope, errors.comparison) == ("error_rate", "all", "gt")
    assert (errors.threshold, errors.window, errors.severity) == (
        0.10,
        timedelta(minutes=10),
        "high",
    )
    slow = rules["Slow node"]
    assert (slow.metric, slow.scope, slow.threshold) == ("latency_avg", "each_node", 5000.0)
    assert (slow.window, slow.severity, slow.enabled) == (timedelta(minutes=15), "medium", True)


def test_channel_secrets_stay_off_the_list_page(client: Client, admin_user: object) -> None:
    NotificationChannel.objects.create(
        name="ops",
        kind="webhook",
        config={"url": "https://hooks.example.com/T0/B0/xyzzy-token", "secret": "s3cr3t"},
    )
    client.force_login(admin_user)  # type: ignore[arg-type]

    page = client.get(reverse("admin:monitoring_notificationchannel_changelist"))

    assert page.status_code == 200
    assert "ops" in page.content.decode()
    assert "xyzzy-token" not in page.content.decode()
    assert "s3cr3t" not in page.content.decode()
