"""The SDK's version client against a live lgmon: registering compiled LangGraph graphs,
resolving a user's version (cached) and runs reporting it without being told."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from lgmon_client import Client, LangGraphMonitor, LgmonError, Sender
from lgmon_client.definition import definition_hash
from monitoring.models import GraphRun
from tests.conftest import make_key
from versioning import assignment, experiments
from versioning.models import Experiment, GraphVersion, Variant

pytestmark = pytest.mark.django_db(transaction=True)


class State(TypedDict):
    trail: Annotated[list[str], operator.add]


def reply(state: State) -> dict[str, list[str]]:
    return {"trail": ["reply"]}


def lookup(state: State) -> dict[str, list[str]]:
    return {"trail": ["lookup"]}


def build(with_lookup: bool) -> Any:
    builder: Any = StateGraph(State)
    builder.add_node("reply", reply)
    if with_lookup:
        builder.add_node("lookup", lookup)
        builder.add_edge(START, "lookup")
        builder.add_edge("lookup", "reply")
    else:
        builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(name="bot")


@pytest.fixture
def client(live_server: Any) -> Client:
    _, key = make_key("manage", "ingest", name="deployer")
    return Client(live_server.url, key)


def test_register_a_compiled_graph_and_get_the_same_version_back(client: Client) -> None:
    first = client.register(build(False), source="abc123")
    again = client.register(build(False))
    second = client.register(build(True), description="adds a lookup")

    assert (first["number"], again["number"], second["number"]) == (1, 1, 2)
    assert first["content_hash"] == definition_hash(build(False))
    version = GraphVersion.objects.get(number=2)
    assert version.graph.name == "bot" and version.description == "adds a lookup"
    assert [node["name"] for node in version.definition["nodes"]] == ["lookup", "reply"]


def test_resolve_caches_and_runs_report_the_resolved_version(
    client: Client, live_server: Any
) -> None:
    client.register(build(False))
    client.register(build(True))
    control, treatment = GraphVersion.objects.order_by("number")
    running = Experiment.objects.create(graph=control.graph, key="lookup-test")
    Variant.objects.create(experiment=running, position=0, name="control", version=control)
    Variant.objects.create(experiment=running, position=1, name="treatment", version=treatment)
    experiments.start(running, now=running.created_at)
    graphs = {1: build(False), 2: build(True)}
    _, ingest_key = make_key("ingest", name="app")
    sender = Sender(live_server.url, ingest_key, flush_interval=0.05)
    monitor = LangGraphMonitor(sender)
    users = [f"user-{i}" for i in range(12)]

    for user in users:
        resolved = client.resolve("bot", user_id=user)
        graphs[resolved.version].invoke(
            {"trail": []}, config={"callbacks": [monitor], "metadata": {"user_id": user}}
        )
    assert sender.flush(timeout=10)
    Variant.objects.filter(experiment=running).update(weight=0.0)  # the cache answers anyway
    cached = client.resolve("bot", user_id=users[0])

    runs = {run.user_id: run for run in GraphRun.objects.all()}
    for user in users:
        index = assignment.assign(running.salt, user, [0.5, 0.5])
        assert runs[user].version == ("1" if index == 0 else "2")
        assert runs[user].experiment == (
            "lookup-test:control" if index == 0 else "lookup-test:treatment"
        )
    assert {run.version for run in runs.values()} == {"1", "2"}
    assert cached.version == int(runs[users[0]].version)
    sender.close(timeout=5)


def test_resolve_errors_are_clear(client: Client, unused_tcp_port: int) -> None:
    with pytest.raises(LgmonError, match="HTTP 404"):
        client.resolve("unknown-graph", user_id="u")
    with pytest.raises(LgmonError, match="unreachable"):
        Client(f"http://127.0.0.1:{unused_tcp_port}", "k", timeout=1).resolve("bot")
