"""An A/B test from end to end, against a live lgmon: two versions of a LangGraph graph
registered by the SDK, an experiment created and started through the API, users resolved and
their runs reported by the SDK, and the results (API and admin page) finding the treatment's
error rate worse."""

from __future__ import annotations

import hashlib
import operator
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

import pytest
import requests
from django.test import Client as DjangoClient
from django.urls import reverse
from langgraph.graph import END, START, StateGraph

from lgmon_client import Client, LangGraphMonitor, Sender
from monitoring.models import GraphRun
from tests.conftest import make_key
from versioning.models import Experiment

pytestmark = pytest.mark.django_db(transaction=True)

GRAPH = "ab-bot"
USERS = 300
FAILING_SHARE = 0.4


class State(TypedDict):
    user: str
    trail: Annotated[list[str], operator.add]


def fails_for(user: str) -> bool:
    """v2's flaky lookup fails for about 40% of users, always the same ones."""
    bucket = int.from_bytes(hashlib.sha256(user.encode()).digest()[:4], "big") / 2**32
    return bucket < FAILING_SHARE


def reply(state: State) -> dict[str, list[str]]:
    return {"trail": ["reply"]}


def flaky_lookup(state: State) -> dict[str, list[str]]:
    if fails_for(state["user"]):
        raise RuntimeError("lookup backend timed out")
    return {"trail": ["lookup"]}


def build(version: int) -> Any:
    builder: Any = StateGraph(State)
    builder.add_node("reply", reply)
    if version == 2:
        builder.add_node("lookup", flaky_lookup)
        builder.add_edge(START, "lookup")
        builder.add_edge("lookup", "reply")
    else:
        builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(name=GRAPH)


def row(content: str, css_class: str) -> str:
    found = re.search(rf'<tr class="{css_class}">(.*?)</tr>', content, re.S)
    assert found, f"no row {css_class}"
    return found.group(1)


def test_a_treatment_that_fails_more_is_found_worse(live_server: Any, admin_user: Any) -> None:
    _, manage_key = make_key("manage", "read", name="deployer")
    client = Client(live_server.url, manage_key)
    graphs = {int(client.register(build(n))["number"]): build(n) for n in (1, 2)}
    assert sorted(graphs) == [1, 2]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {manage_key}"
    created = api.post(
        f"{live_server.url}/api/v1/experiments/",
        json={
            "graph": GRAPH,
            "key": "flaky-lookup",
            "hypothesis": "A lookup before the reply helps.",
            "min_units": 50,
            "variants": [
                {"name": "control", "version": 1, "weight": 0.5},
                {"name": "treatment", "version": 2, "weight": 0.5},
            ],
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    started = api.post(f"{live_server.url}/api/v1/experiments/flaky-lookup/start/", timeout=10)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "running"

    _, ingest_key = make_key("ingest", name="app")
    sender = Sender(live_server.url, ingest_key, flush_interval=0.05)
    monitor = LangGraphMonitor(sender)

    def serve(user: str) -> tuple[int, bool]:
        """One user's request, as the app handles it: the version, and whether it failed."""
        resolved = client.resolve(GRAPH, user_id=user)
        try:
            graphs[resolved.version].invoke(
                {"user": user, "trail": []},
                config={"callbacks": [monitor], "metadata": {"user_id": user}},
            )
        except RuntimeError:  # the app would answer with an apology
            return resolved.version, True
        return resolved.version, False

    # A few users at a time, as a web app serves them (each thread resolves and then runs in
    # its own context, which is how the runs learn their version and variant).
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(serve, [f"user-{index}" for index in range(USERS)]))
    served = Counter(version for version, _ in outcomes)
    failed = sum(failure for _, failure in outcomes)
    assert sender.flush(timeout=10)
    sender.close(timeout=5)

    assert sorted(served) == [1, 2] and min(served.values()) > USERS * 0.3, served
    assert GraphRun.objects.filter(graph__name=GRAPH).count() == USERS
    errors = GraphRun.objects.filter(status="error")
    assert errors.count() == failed > 0
    assert set(errors.values_list("experiment", flat=True)) == {"flaky-lookup:treatment"}

    results = api.get(f"{live_server.url}/api/v1/experiments/flaky-lookup/results/", timeout=10)
    assert results.status_code == 200, results.text
    document = results.json()
    control, treatment = document["variants"]
    assert (control["units"], treatment["units"]) == (served[1], served[2])
    assert control["error_rate"] == 0.0
    assert treatment["error_rate"] == pytest.approx(FAILING_SHARE, abs=0.1)
    assert document["comparisons"][0]["error_rate"]["verdict"] == "worse"
    assert document["comparisons"][0]["error_rate"]["guardrail_breached"]

    browser = DjangoClient()
    browser.force_login(admin_user)
    experiment = Experiment.objects.get(key="flaky-lookup")
    page = browser.get(reverse("admin:versioning_experiment_results", args=[experiment.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    assert '<td class="verdict verdict-worse">WORSE</td>' in row(content, "metric-error_rate")
    shown = f"{100 * treatment['error_rate']:.1f}%"
    assert f'<td class="number error-rate">{shown}</td>' in row(content, "variant-treatment")
    assert '<td class="number error-rate">0.0%</td>' in row(content, "variant-control")
