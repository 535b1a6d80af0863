"""Resolving the version a unit should run: the active one, or its sticky variant of a running
experiment, assigned by GrowthBook's hash."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.conftest import key_client
from tests.versioning.test_versions_api import V1, v2
from versioning import assignment, experiments, services
from versioning.models import Assignment, Experiment, Graph, GraphVersion, Variant

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def app(db: None) -> APIClient:
    return key_client("ingest", name="app")


@pytest.fixture
def versions() -> tuple[GraphVersion, GraphVersion]:
    first = services.register("support-bot", V1).version
    second = services.register("support-bot", v2()).version
    return first, second


def experiment(
    versions: tuple[GraphVersion, GraphVersion], *, coverage: float = 1.0, start: bool = True
) -> Experiment:
    control, treatment = versions
    created = Experiment.objects.create(graph=control.graph, key="reply-v2", coverage=coverage)
    Variant.objects.create(experiment=created, position=0, name="control", version=control)
    Variant.objects.create(experiment=created, position=1, name="treatment", version=treatment)
    if start:
        experiments.start(created, now=NOW)
    return created


def resolve(client: APIClient, **params: str) -> Any:
    return client.get("/api/v1/graphs/support-bot/resolve", params)


def test_without_an_experiment_the_active_version_is_resolved(
    app: APIClient, versions: Any
) -> None:
    response = resolve(app, user_id="u1")

    assert response.status_code == 200
    assert response.json() == {
        "graph": "support-bot",
        "version": 1,
        "content_hash": versions[0].content_hash,
        "experiment": None,
        "variant": None,
    }
    assert app.get("/api/v1/graphs/support-bot/resolve/").status_code == 200  # slash or not


def test_units_get_growthbooks_variant_and_keep_it(app: APIClient, versions: Any) -> None:
    running = experiment(versions)
    names = ["control", "treatment"]
    users = [f"user-{i}" for i in range(40)]

    first = {user: resolve(app, user_id=user).json() for user in users}
    Variant.objects.filter(experiment=running, name="control").update(weight=0.01)
    again = {user: resolve(app, user_id=user).json() for user in users}

    for user in users:
        expected = names[assignment.assign(running.salt, user, [0.5, 0.5]) or 0]
        assert first[user]["variant"] == expected
        assert first[user]["version"] == (1 if expected == "control" else 2)
        assert first[user]["experiment"] == "reply-v2"
    assert again == first  # sticky, whatever the weights say now
    assert Assignment.objects.filter(experiment=running).count() == 40
    assert {r["variant"] for r in first.values()} == {"control", "treatment"}


def test_sessions_stand_in_for_users_and_anonymous_units_are_not_stored(
    app: APIClient, versions: Any
) -> None:
    running = experiment(versions)

    by_session = resolve(app, session_id="s-1").json()
    anonymous = [resolve(app).json()["variant"] for _ in range(30)]

    assert Assignment.objects.get().unit == "s-1"
    expected = ["control", "treatment"][assignment.assign(running.salt, "s-1", [0.5, 0.5]) or 0]
    assert by_session["variant"] == expected
    assert set(anonymous) <= {"control", "treatment"}
    assert Assignment.objects.count() == 1


def test_units_outside_the_coverage_run_the_active_version(app: APIClient, versions: Any) -> None:
    experiment(versions, coverage=0.0)

    body = resolve(app, user_id="u1").json()

    assert (body["version"], body["experiment"], body["variant"]) == (1, None, None)
    assert not Assignment.objects.exists()


def test_starting_needs_two_variants_of_the_graph_and_one_running_experiment_per_graph(
    versions: Any,
) -> None:
    control, _ = versions
    lonely = Experiment.objects.create(graph=control.graph, key="lonely")
    Variant.objects.create(experiment=lonely, position=0, name="control", version=control)
    with pytest.raises(experiments.ExperimentError, match="at least two variants"):
        experiments.start(lonely, now=NOW)

    other = services.register("billing", copy.deepcopy(V1) | {"name": "billing"}).version
    Variant.objects.create(experiment=lonely, position=1, name="other", version=other)
    with pytest.raises(experiments.ExperimentError, match="version of the experiment's graph"):
        experiments.start(lonely, now=NOW)

    experiment(versions)
    second = experiment_like(versions, key="second")
    with pytest.raises(experiments.ExperimentError, match="running experiment already"):
        experiments.start(second, now=NOW)
    assert Experiment.objects.get(key="second").status == "draft"


def experiment_like(versions: Any, *, key: str) -> Experiment:
    control, treatment = versions
    created = Experiment.objects.create(graph=control.graph, key=key)
    Variant.objects.create(experiment=created, position=0, name="a", version=control)
    Variant.objects.create(experiment=created, position=1, name="b", version=treatment)
    return created


def test_stopping_returns_units_to_the_active_version(app: APIClient, versions: Any) -> None:
    running = experiment(versions)

    assert experiments.stop(running, now=NOW, reason="done")
    assert not experiments.stop(running, now=NOW)

    assert resolve(app, user_id="u1").json()["experiment"] is None
    assert running.ended_at == NOW and running.stopped_reason == "done"


def test_resolve_errors(app: APIClient) -> None:
    Graph.objects.create(name="support-bot")

    assert resolve(app, user_id="u").status_code == 404  # no version registered yet
    assert app.get("/api/v1/graphs/nope/resolve").status_code == 404
    assert resolve(app, user_id="u" * 300).status_code == 400
    assert APIClient().get("/api/v1/graphs/support-bot/resolve").status_code == 401


def test_experiments_through_the_api(versions: Any) -> None:
    manager = key_client("manage", "read", name="pm")
    body = {
        "graph": "support-bot",
        "key": "reply-v2",
        "hypothesis": "the lookup answers better",
        "variants": [
            {"name": "control", "version": 1, "weight": 0.5},
            {"name": "treatment", "version": 2, "weight": 0.5},
        ],
    }

    created = manager.post("/api/v1/experiments/", body, format="json")
    duplicate = manager.post("/api/v1/experiments/", body, format="json")
    started = manager.post("/api/v1/experiments/reply-v2/start/")
    again = manager.post("/api/v1/experiments/reply-v2/start/")
    stopped = manager.post("/api/v1/experiments/reply-v2/stop/", {"reason": "enough"})

    assert created.status_code == 201
    assert created.json()["variants"] == [
        {"name": "control", "version": 1, "weight": 0.5},
        {"name": "treatment", "version": 2, "weight": 0.5},
    ]
    assert created.json()["created_by"] == "key:pm"
    assert duplicate.status_code == 400 and "exists already" in duplicate.json()["key"][0]
    assert started.status_code == 200 and started.json()["status"] == "running"
    assert again.status_code == 409
    assert stopped.json()["status"] == "stopped"
    assert stopped.json()["stopped_reason"] == "enough"
    listed = manager.get("/api/v1/experiments/").json()["results"]
    assert [e["key"] for e in listed] == ["reply-v2"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"graph": "nope"}, "graph", "No graph named"),
        ({"variants": [{"name": "a", "version": 1, "weight": 1.0}]}, "variants", "two variants"),
        (
            {"variants": [{"name": "a", "version": 1}, {"name": "b", "version": 9}]},
            "variants",
            "no version 9",
        ),
        (
            {"variants": [{"name": "a", "version": 1, "weight": 0.9}, {"name": "b", "version": 2}]},
            "variants",
            "add up to 1",
        ),
        ({"key": "not a slug"}, "key", "letters"),
    ],
)
def test_bad_experiments_get_field_errors(
    versions: Any, change: dict[str, Any], field: str, message: str
) -> None:
    manager = key_client("manage")
    body = {
        "graph": "support-bot",
        "key": "exp",
        "variants": [{"name": "a", "version": 1}, {"name": "b", "version": 2}],
    } | change

    response = manager.post("/api/v1/experiments/", body, format="json")

    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert not Experiment.objects.exists()


def test_record_test_result_stores_a_run_of_the_variant(app: APIClient, versions: Any) -> None:
    from monitoring.models import GraphRun

    experiment(versions)

    ok = app.post(
        "/api/v1/experiments/reply-v2/record/",
        {"user_id": "u1", "variant": "treatment", "success": False, "duration_ms": 812.5},
        format="json",
    )
    unknown = app.post(
        "/api/v1/experiments/reply-v2/record/",
        {"user_id": "u1", "variant": "nope", "success": True, "duration_ms": 1},
        format="json",
    )
    anonymous = app.post(
        "/api/v1/experiments/reply-v2/record/",
        {"variant": "control", "success": True, "duration_ms": 1},
        format="json",
    )

    assert ok.status_code == 201
    run = GraphRun.objects.get()
    assert (run.status, run.version, run.experiment, run.user_id, run.duration_ms) == (
        "error",
        "2",
        "reply-v2:treatment",
        "u1",
        812.5,
    )
    assert unknown.status_code == 400 and "no variant 'nope'" in unknown.json()["variant"][0]
    assert anonymous.status_code == 400 and "user_id" in anonymous.json()
