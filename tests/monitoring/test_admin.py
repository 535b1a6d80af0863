from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitoring.models import ApiKey, GraphRun, MinuteRollup
from tests.conftest import graph_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_run(post_batch: Any) -> GraphRun:
    run = graph_run(nodes=[("retrieve", "success", 12.0), ("answer", "error", 30.0)])
    assert post_batch([run]).status_code == 200
    return GraphRun.objects.get(run_id=run["run_id"])


@pytest.mark.parametrize(
    "model",
    [
        "graphrun",
        "noderun",
        "metricpoint",
        "minuterollup",
        "hourrollup",
        "sessionactivity",
        "rollupdelta",
        "apikey",
        "alertrule",
        "alert",
        "silence",
        "notificationchannel",
        "notification",
    ],
)
def test_it_lists_every_monitoring_model(
    admin_client_: Client, stored_run: GraphRun, model: str
) -> None:
    response = admin_client_.get(reverse(f"admin:monitoring_{model}_changelist"))
    assert response.status_code == 200


def test_it_shows_node_runs_inline_on_a_graph_run(
    admin_client_: Client, stored_run: GraphRun
) -> None:
    response = admin_client_.get(reverse("admin:monitoring_graphrun_change", args=[stored_run.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "retrieve" in content
    assert "answer" in content


def test_it_filters_runs_by_status_and_searches_by_user(
    admin_client_: Client, post_batch: Any
) -> None:
    post_batch([graph_run(status="error", user_id="u-err"), graph_run(user_id="u-ok")])
    url = reverse("admin:monitoring_graphrun_changelist")
    assert "u-err" in admin_client_.get(url, {"status__exact": "error"}).content.decode()
    assert "u-ok" not in admin_client_.get(url, {"status__exact": "error"}).content.decode()
    assert "u-ok" in admin_client_.get(url, {"q": "u-ok"}).content.decode()


def test_it_does_not_let_telemetry_be_edited(admin_client_: Client, stored_run: GraphRun) -> None:
    assert admin_client_.get(reverse("admin:monitoring_graphrun_add")).status_code == 403
    assert (
        admin_client_.get(
            reverse("admin:monitoring_minuterollup_change", args=[MinuteRollup.objects.first().pk])  # type: ignore[union-attr]
        ).status_code
        == 200
    )


def test_it_shows_a_new_api_key_once_and_only_its_prefix_after(admin_client_: Client) -> None:
    response = admin_client_.post(
        reverse("admin:monitoring_apikey_add"),
        {"name": "prod app", "scopes": ["ingest", "read"]},
        follow=True,
    )
    assert response.status_code == 200
    key = ApiKey.objects.get(name="prod app")
    messages = [str(m) for m in response.context["messages"]]
    raw = next(m for m in messages if "API key created" in m).split()[3]
    assert raw.startswith(f"lgm_{key.prefix}_")
    assert ApiKey.objects.for_raw_key(raw) == key
    assert key.scopes == ["ingest", "read"]
    assert key.created_by is not None and key.created_by.username == "alice"

    listing = admin_client_.get(reverse("admin:monitoring_apikey_changelist")).content.decode()
    change = admin_client_.get(reverse("admin:monitoring_apikey_change", args=[key.pk]))
    assert key.prefix in listing
    assert raw not in listing
    assert raw not in change.content.decode()
    assert key.hashed_key not in listing + change.content.decode()


def test_it_requires_at_least_one_scope(admin_client_: Client) -> None:
    response = admin_client_.post(reverse("admin:monitoring_apikey_add"), {"name": "x"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"scopes": ["This field is required."]}
    assert not ApiKey.objects.exists()


def test_it_revokes_keys_with_an_admin_action(admin_client_: Client) -> None:
    keys = [ApiKey(name=f"k{i}", scopes=["ingest"]) for i in range(2)]
    for key in keys:
        key.set_new_secret()
        key.save()
    response = admin_client_.post(
        reverse("admin:monitoring_apikey_changelist"),
        {"action": "revoke", "_selected_action": [keys[0].pk]},
        follow=True,
    )
    assert "Revoked 1 API key(s)." in response.content.decode()
    keys[0].refresh_from_db()
    keys[1].refresh_from_db()
    assert keys[0].revoked_at is not None
    assert keys[1].revoked_at is None


def test_it_shows_usage_analytics_in_the_admin(admin_client_: Client, post_batch: Any) -> None:
    started = timezone.now() - timedelta(hours=1)
    post_batch(
        [
            graph_run(
                "support-bot",
                user_id="u-1",
                session_id="s-1",
                started_at=started,
                nodes=[("retrieve", "success", 5.0)],
            ),
            graph_run("billing", user_id="u-2", started_at=started),
        ]
    )
    url = reverse("admin:analytics_usagereport_changelist")
    response = admin_client_.get(url, {"days": "7", "user_id": "u-1"})
    assert response.status_code == 200
    assert [row["graph"] for row in response.context["popular"]] == ["billing", "support-bot"]
    assert response.context["active"]["users"] == 2
    assert response.context["user"]["runs_per_graph"] == {"support-bot": 1}
    assert "retrieve" in response.content.decode()

    bad = admin_client_.get(url, {"days": "0"})
    assert bad.status_code == 200
    assert "days" in bad.context["form"].errors


def test_it_keeps_the_admin_from_anonymous_users(client: Client) -> None:
    response = client.get(reverse("admin:monitoring_graphrun_changelist"))
    assert response.status_code == 302


def test_it_lists_graphs_with_their_last_day_of_traffic(
    admin_client_: Client, post_batch: Any
) -> None:
    post_batch([graph_run(status="error"), graph_run(), graph_run(), graph_run("quiet")])
    response = admin_client_.get(reverse("admin:versioning_graph_changelist"))
    assert response.status_code == 200
    rows = {graph.name: graph for graph in response.context["cl"].result_list}
    assert (rows["support-bot"].runs_24h, rows["support-bot"].errors_24h) == (3, 1)
    assert "33.3%" in response.content.decode()
