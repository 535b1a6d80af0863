"""The viewer, operator and admin roles, for every API endpoint and admin action: a signed-in
person gets exactly what their role allows (API keys go by scopes, tested elsewhere)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from rest_framework.test import APIClient

from monitoring.models import Alert, AlertRule
from tests.conftest import graph_run
from tests.versioning.test_versions_api import V1, v2
from versioning import services
from versioning.models import Experiment, Variant

pytestmark = pytest.mark.django_db
ROLES = ("viewer", "operator", "admin")
NONE = "staff without a role"
ORDER = {NONE: 0, "viewer": 1, "operator": 2, "admin": 3}


def person(role: str) -> User:
    user = User.objects.create_user(role.replace(" ", "-"), password="pw", is_staff=True)
    if role in ROLES:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def world() -> dict[str, Any]:
    """A graph with two versions, a firing alert, a draft experiment and some runs."""
    first = services.register("support-bot", V1).version
    second = services.register("support-bot", v2()).version
    rule = AlertRule.objects.get(name="High error rate")
    alert = Alert.objects.create(rule=rule, fingerprint="f" * 64, state="firing", episode=1)
    experiment = Experiment.objects.create(graph=first.graph, key="exp")
    Variant.objects.create(experiment=experiment, position=0, name="a", version=first)
    Variant.objects.create(experiment=experiment, position=1, name="b", version=second)
    return {"alert": alert.id, "experiment": experiment.id}


READ = [
    "/api/v1/stats/?window=1h",
    "/api/v1/stats/graphs/?window=1h",
    "/api/v1/stats/nodes/?window=1h",
    "/api/v1/stats/series/?window=1h",
    "/api/v1/error-rate/",
    "/api/v1/average-duration/?node=a",
    "/api/v1/runs/",
    "/api/v1/export/runs.csv",
    "/api/v1/export/node-runs.csv",
    "/api/v1/graphs/",
    "/api/v1/graphs/support-bot/",
    "/api/v1/graphs/support-bot/versions/",
    "/api/v1/graphs/support-bot/versions/1/",
    "/api/v1/graphs/support-bot/versions/2/diff/",
    "/api/v1/graphs/support-bot/history/",
    "/api/v1/graphs/support-bot/resolve?user_id=u1",
    "/api/v1/alerts/",
    "/api/v1/alerts/{alert}/",
    "/api/v1/experiments/",
    "/api/v1/experiments/exp/",
    "/api/v1/experiments/exp/results/",
    "/api/v1/analytics/popular-graphs/",
    "/api/v1/analytics/nodes/",
    "/api/v1/analytics/users/u1/",
    "/api/v1/analytics/active-users/",
    "/api/v1/analytics/popular-graphs/?format=csv",
    "/api/v1/analytics/nodes/?format=csv",
    "/api/v1/analytics/users/u1/?format=csv",
    "/api/v1/analytics/active-users/?format=csv",
    "/api/schema/",
    "/metrics",
]
V3 = copy.deepcopy(V1) | {"state": ["messages", "account"]}
WRITE: list[tuple[str, str, dict[str, Any], str]] = [
    ("alerts acknowledge", "/api/v1/alerts/{alert}/acknowledge/", {}, "operator"),
    ("alerts resolve", "/api/v1/alerts/{alert}/resolve/", {}, "operator"),
    ("register a version", "/api/v1/graphs/support-bot/versions/", {"definition": V3}, "operator"),
    ("activate", "/api/v1/graphs/support-bot/versions/2/activate/", {}, "operator"),
    (
        "roll back",
        "/api/v1/graphs/support-bot/versions/1/rollback/",
        {"reason": "bad"},
        "operator",
    ),
    (
        "create an experiment",
        "/api/v1/experiments/",
        {
            "graph": "support-bot",
            "key": "exp2",
            "variants": [{"name": "a", "version": 1}, {"name": "b", "version": 2}],
        },
        "operator",
    ),
    ("start an experiment", "/api/v1/experiments/exp/start/", {}, "operator"),
    (
        "record a result",
        "/api/v1/experiments/exp/record/",
        {"user_id": "u", "variant": "a", "success": True, "duration_ms": 5},
        "operator",
    ),
    ("ingest", "/api/v1/ingest/", {"graph_runs": [graph_run()]}, "admin"),
]


@pytest.mark.parametrize("role", [NONE, *ROLES])
@pytest.mark.parametrize("path", READ)
def test_every_role_reads_and_nobody_else(world: dict[str, Any], role: str, path: str) -> None:
    client = APIClient()
    client.force_login(person(role))

    status = client.get(path.format(**world)).status_code

    if role == NONE:
        assert status in (401, 403)
    else:
        assert status == 200


@pytest.mark.parametrize("role", [NONE, *ROLES])
@pytest.mark.parametrize(("name", "path", "body", "least"), WRITE, ids=[w[0] for w in WRITE])
def test_writes_need_the_role(
    world: dict[str, Any], role: str, name: str, path: str, body: dict[str, Any], least: str
) -> None:
    if "roll back" in name:
        services.activate(services.register("support-bot", v2()).version, actor="setup")
    client = APIClient()
    client.force_login(person(role))

    response = client.post(path.format(**world), body, format="json")

    if ORDER[role] >= ORDER[least]:
        assert response.status_code in (200, 201), response.content
    else:
        assert response.status_code == 403


def test_the_groups_exist_with_growing_permissions() -> None:
    viewer, operator, admin = (
        set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))
        for role in ROLES
    )

    assert viewer < operator < admin
    assert all(codename.startswith("view_") for codename in viewer)
    assert {"change_alert", "activate_graphversion", "change_experiment"} <= operator
    assert "change_notificationchannel" not in operator and "add_apikey" not in operator
    assert {"change_notificationchannel", "add_apikey", "add_user"} <= admin


# --- the admin -----------------------------------------------------------------------------------

ACTIONS = [
    ("/admin/monitoring/alert/", "acknowledge", "operator"),
    ("/admin/monitoring/alert/", "resolve", "operator"),
    ("/admin/monitoring/alert/", "silence_1h", "operator"),
    ("/admin/monitoring/alert/", "silence_24h", "operator"),
    ("/admin/monitoring/silence/", "end_now", "operator"),
    ("/admin/versioning/graphversion/", "activate", "operator"),
    ("/admin/versioning/graphversion/", "rollback", "operator"),
    ("/admin/versioning/experiment/", "start", "operator"),
    ("/admin/versioning/experiment/", "stop", "operator"),
    ("/admin/monitoring/notificationchannel/", "send_test_notification", "admin"),
    ("/admin/monitoring/apikey/", "revoke", "admin"),
    ("/admin/monitoring/graphrun/", "export_csv", "viewer"),
    ("/admin/monitoring/noderun/", "export_csv", "viewer"),
]
PAGES = [
    ("/admin/monitoring/silence/add/", "operator"),
    ("/admin/versioning/experiment/add/", "operator"),
    ("/admin/monitoring/alertrule/add/", "admin"),
    ("/admin/monitoring/notificationchannel/add/", "admin"),
    ("/admin/monitoring/apikey/add/", "admin"),
    ("/admin/auth/user/add/", "admin"),
    ("/admin/monitoring/graphrun/", "viewer"),
    ("/admin/monitoring/alert/", "viewer"),
    ("/admin/versioning/graphversion/", "viewer"),
    ("/admin/analytics/usagereport/", "viewer"),
    ("/admin/dashboards/", "viewer"),
    ("/admin/dashboards/graphs/support-bot/", "viewer"),
    ("/admin/dashboards/system/", "viewer"),
    ("/admin/versioning/experiment/{experiment}/results/", "viewer"),
    ("/api/docs/", "viewer"),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("page", "action", "least"), ACTIONS, ids=[f"{p}{a}" for p, a, _ in ACTIONS]
)
def test_admin_actions_follow_the_role(
    world: dict[str, Any], role: str, page: str, action: str, least: str
) -> None:
    client = Client()
    client.force_login(person(role))

    response = client.get(page)

    assert response.status_code == 200
    form = response.context["action_form"]
    offered = {value for value, _ in form.fields["action"].choices} if form else set()
    assert (action in offered) == (ORDER[role] >= ORDER[least])


@pytest.mark.parametrize("role", [NONE, *ROLES])
@pytest.mark.parametrize(("page", "least"), PAGES, ids=[p for p, _ in PAGES])
def test_admin_pages_follow_the_role(
    world: dict[str, Any], role: str, page: str, least: str
) -> None:
    client = Client()
    client.force_login(person(role))

    status = client.get(page.format(**world)).status_code

    assert status == (200 if ORDER[role] >= ORDER[least] else 403)


def test_a_forged_resolve_by_a_viewer_changes_nothing(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(person("viewer"))

    client.post(
        "/admin/monitoring/alert/",
        {"action": "resolve", "_selected_action": [world["alert"]]},
    )

    assert Alert.objects.get(id=world["alert"]).state == "firing"
