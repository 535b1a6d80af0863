"""Graph versions through the API: registration by content, activation, rollback with a
reason, the append-only history and the structural diff."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import key_client, run_at_once, uses_postgres
from versioning import services
from versioning.models import GraphVersion, ImmutableVersion, VersionEvent

pytestmark = pytest.mark.django_db
V1: dict[str, Any] = {
    "name": "support-bot",
    "state": ["messages"],
    "nodes": [
        {"name": "classify", "callable": "app.classify"},
        {"name": "reply", "callable": "app.reply"},
    ],
    "edges": [["__start__", "classify"], ["classify", "reply"], ["reply", "__end__"]],
    "branches": [],
    "joins": [],
}


def v2() -> dict[str, Any]:
    definition = copy.deepcopy(V1)
    definition["nodes"][1]["callable"] = "app.reply_v2"
    definition["nodes"].append({"name": "lookup", "callable": "app.lookup"})
    definition["edges"] = [
        ["__start__", "classify"],
        ["classify", "lookup"],
        ["lookup", "reply"],
        ["reply", "__end__"],
    ]
    return definition


@pytest.fixture
def manager(db: None) -> APIClient:
    return key_client("manage", "read", name="deployer")


def register(client: APIClient, definition: dict[str, Any], **extra: Any) -> Any:
    return client.post(
        "/api/v1/graphs/support-bot/versions/", {"definition": definition, **extra}, format="json"
    )


def test_registering_numbers_versions_and_returns_known_definitions(manager: APIClient) -> None:
    first = register(manager, V1, description="first cut", source="abc123")
    again = register(manager, copy.deepcopy(V1), description="ignored")
    second = register(manager, v2())

    assert (first.status_code, again.status_code, second.status_code) == (201, 200, 201)
    assert first.json()["number"] == again.json()["number"] == 1
    assert second.json()["number"] == 2
    assert first.json()["content_hash"] == services.content_hash(V1)
    assert first.json()["created_by"] == "key:deployer"
    assert GraphVersion.objects.count() == 2
    # The first version of a graph is the active one, recorded as an event.
    assert [
        v["is_active"]
        for v in manager.get("/api/v1/graphs/support-bot/versions/").json()["results"]
    ] == [False, True]
    assert VersionEvent.objects.get().reason == "first version"


def test_the_content_hash_is_the_sdks(manager: APIClient) -> None:
    from lgmon_client.definition import definition_hash

    reordered = dict(reversed(list(V1.items())))

    assert register(manager, reordered).json()["content_hash"] == definition_hash(V1)


def test_bad_registrations_get_field_errors(manager: APIClient) -> None:
    assert register(manager, {}).json() == {"definition": ["A definition cannot be empty."]}
    response = register(manager, {"nodes": "a"}, source="x" * 101)
    assert response.status_code == 400
    assert set(response.json()) == {"definition", "source"}
    assert not GraphVersion.objects.exists()


def test_registering_needs_the_manage_scope() -> None:
    reader = key_client("read")

    assert register(reader, V1).status_code == 403
    assert APIClient().get("/api/v1/graphs/support-bot/versions/").status_code == 401


def test_activate_and_roll_back_with_an_audited_history(manager: APIClient) -> None:
    register(manager, V1)
    register(manager, v2())
    url = "/api/v1/graphs/support-bot/versions"

    activated = manager.post(f"{url}/2/activate/", {"reason": "ship it"}, format="json")
    no_reason = manager.post(f"{url}/1/rollback/", {}, format="json")
    rolled = manager.post(f"{url}/1/rollback/", {"reason": "errors up 4x"}, format="json")
    forward = manager.post(f"{url}/2/rollback/", {"reason": "?"}, format="json")
    twice = manager.post(f"{url}/1/activate/", {}, format="json")

    assert activated.status_code == 200
    assert activated.json() | {"created_at": None, "id": None} == {
        "id": None,
        "graph": "support-bot",
        "action": "activate",
        "from_version": 1,
        "to_version": 2,
        "reason": "ship it",
        "actor": "key:deployer",
        "created_at": None,
    }
    assert no_reason.status_code == 400
    assert no_reason.json() == {"reason": ["A rollback needs a reason."]}
    assert rolled.status_code == 200 and rolled.json()["action"] == "rollback"
    assert forward.status_code == 409 and "earlier version" in forward.json()["detail"]
    assert twice.status_code == 409 and "active version already" in twice.json()["detail"]
    assert GraphVersion.objects.get(is_active=True).number == 1
    history = manager.get("/api/v1/graphs/support-bot/history/").json()["results"]
    assert [(e["action"], e["from_version"], e["to_version"]) for e in history] == [
        ("rollback", 2, 1),
        ("activate", 1, 2),
        ("activate", None, 1),
    ]


def test_versions_are_never_edited_or_deleted(manager: APIClient) -> None:
    register(manager, V1)
    version = GraphVersion.objects.get()
    version.description = "rewritten"

    with pytest.raises(ImmutableVersion):
        version.save()
    with pytest.raises(ImmutableVersion):
        version.delete()
    assert GraphVersion.objects.get().description == ""


def test_the_diff_names_what_changed(manager: APIClient) -> None:
    register(manager, V1)
    register(manager, v2())

    response = manager.get("/api/v1/graphs/support-bot/versions/2/diff/")
    explicit = manager.get("/api/v1/graphs/support-bot/versions/1/diff/", {"against": 2})

    assert response.status_code == 200
    changes = response.json()["changes"]
    assert changes["nodes"] == {
        "added": [{"name": "lookup", "callable": "app.lookup"}],
        "removed": [],
        "changed": {"reply": {"callable": {"before": "app.reply", "after": "app.reply_v2"}}},
    }
    assert changes["edges"] == {
        "added": [["classify", "lookup"], ["lookup", "reply"]],
        "removed": [["classify", "reply"]],
    }
    assert set(changes) == {"nodes", "edges"}
    assert explicit.json()["changes"]["nodes"]["removed"] == [
        {"name": "lookup", "callable": "app.lookup"}
    ]
    bad = manager.get("/api/v1/graphs/support-bot/versions/2/diff/", {"against": 9})
    assert bad.status_code == 400 and "no version 9" in bad.json()["against"][0]
    assert manager.get("/api/v1/graphs/support-bot/versions/7/").status_code == 404


def test_diff_reports_other_keys_as_config() -> None:
    changed = services.diff({"name": "a", "recursion_limit": 25}, {"name": "b"})

    assert changed == {
        "config": {
            "name": {"before": "a", "after": "b"},
            "recursion_limit": {"before": 25, "after": None},
        }
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not uses_postgres(), reason="concurrent writers need PostgreSQL")
def test_concurrent_activations_leave_one_active_version_and_a_consistent_history() -> None:
    versions = []
    for index in range(6):
        definition = copy.deepcopy(V1)
        definition["nodes"][0]["callable"] = f"app.classify_{index}"
        versions.append(services.register("support-bot", definition).version)
    targets = iter(versions[1:] * 2)

    def activate() -> str:
        try:
            services.activate(next(targets), actor="race")
        except services.VersionError:
            return "refused"
        return "done"

    outcomes = run_at_once(activate, threads=10)

    assert GraphVersion.objects.filter(is_active=True).count() == 1
    events = list(VersionEvent.objects.order_by("id"))
    assert len(events) == 1 + outcomes.count("done")
    for before, after in itertools.pairwise(events):
        assert after.from_version_id == before.to_version_id  # each saw the previous winner
    assert events[-1].to_version_id == GraphVersion.objects.get(is_active=True).id


def test_diff_keeps_scalar_changes_and_plain_lists() -> None:
    assert services.diff({"flag": False}, {}) == {
        "config": {"flag": {"before": False, "after": None}}
    }
    assert services.diff({"nodes": ["a"]}, {"nodes": ["b"]}) == {
        "nodes": {"added": ["b"], "removed": ["a"]}
    }


def test_the_first_version_diffs_against_nothing(manager: APIClient) -> None:
    register(manager, V1)

    body = manager.get("/api/v1/graphs/support-bot/versions/1/diff/").json()

    assert body["from"] is None
    assert len(body["changes"]["nodes"]["added"]) == 2


def test_versions_cannot_be_deleted_in_bulk(manager: APIClient) -> None:
    register(manager, V1)

    with pytest.raises(ImmutableVersion):
        GraphVersion.objects.all().delete()
    assert GraphVersion.objects.count() == 1
