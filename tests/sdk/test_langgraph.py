"""The client SDK against a live lgmon: real LangGraph graphs (no LLM), run through
``LangGraphMonitor`` and the background sender to Django's live server, then read back from
the database.
"""

from __future__ import annotations

import asyncio
import operator
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Annotated, Any, TypedDict

import pytest
from django.utils import timezone
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, interrupt

from lgmon_client import LangGraphMonitor, Sender
from monitoring.models import GraphRun

pytestmark = pytest.mark.django_db(transaction=True)


class State(TypedDict):
    trail: Annotated[list[str], operator.add]


def step(name: str, sleep: float = 0.0) -> Any:
    def node(state: State) -> dict[str, list[str]]:
        if sleep:
            time.sleep(sleep)
        return {"trail": [name]}

    node.__name__ = name
    return node


def pipeline(name: str = "pipeline") -> Any:
    """plan -> (slow | END by a router) -> answer: three nodes and a conditional edge."""

    def route(state: State) -> str:
        return "slow" if "plan" in state["trail"] else END

    builder = StateGraph(State)
    builder.add_node("plan", step("plan"))
    builder.add_node("slow", step("slow", sleep=0.03))
    builder.add_node("answer", step("answer"))
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", route, ["slow", END])
    builder.add_edge("slow", "answer")
    builder.add_edge("answer", END)
    return builder.compile(name=name)


@pytest.fixture
def monitor(sender: Sender) -> LangGraphMonitor:
    return LangGraphMonitor(sender)


def stored(monitor: LangGraphMonitor, **filters: Any) -> list[GraphRun]:
    """Flush the SDK, then the graph runs the server stored, oldest first, with node runs."""
    assert monitor.flush(timeout=10), monitor.sender.stats()
    return list(
        GraphRun.objects.filter(**filters)
        .select_related("graph")
        .prefetch_related("node_runs")
        .order_by("started_at", "id")
    )


def nodes_of(run: GraphRun) -> list[tuple[str, str]]:
    return [(n.node, n.status) for n in sorted(run.node_runs.all(), key=lambda n: n.started_at)]


def assert_pipeline_run(run: GraphRun, *, user: str = "u-1", session: str = "s-1") -> None:
    assert run.graph.name == "pipeline"
    assert run.status == "success"
    assert run.user_id == user
    assert run.session_id == session
    assert run.parent_run_id is None
    assert nodes_of(run) == [("plan", "success"), ("slow", "success"), ("answer", "success")]
    slow = run.node_runs.get(node="slow")
    assert 30 <= slow.duration_ms < 2_000
    assert run.duration_ms >= slow.duration_ms
    assert abs(run.started_at - timezone.now()) < timedelta(seconds=30)
    assert all(n.run_id is not None and n.attempt == 1 for n in run.node_runs.all())


CONFIG: Any = {"metadata": {"user_id": "u-1", "session_id": "s-1", "tenant": "acme"}}


def test_invoke_reports_graph_and_node_runs(monitor: LangGraphMonitor) -> None:
    result = pipeline().invoke({"trail": []}, config={**CONFIG, "callbacks": [monitor]})

    assert result == {"trail": ["plan", "slow", "answer"]}
    [run] = stored(monitor)
    assert_pipeline_run(run)
    assert run.metadata == {"tenant": "acme"}
    assert monitor.open_runs() == 0
    assert monitor.sender.stats().sent == 1


def test_ainvoke_stream_and_astream(monitor: LangGraphMonitor) -> None:
    graph = pipeline().with_config(callbacks=[monitor])

    async def run_async() -> None:
        await graph.ainvoke({"trail": []}, config=CONFIG)
        async for _ in graph.astream({"trail": []}, config=CONFIG):
            pass

    asyncio.run(run_async())
    chunks = list(graph.stream({"trail": []}, config=CONFIG))

    assert [list(chunk) for chunk in chunks] == [["plan"], ["slow"], ["answer"]]
    runs = stored(monitor)
    assert len(runs) == 3
    for run in runs:
        assert_pipeline_run(run)


def test_stream_abandoned_midway_is_cancelled(monitor: LangGraphMonitor) -> None:
    async def first_chunk_only() -> None:
        stream = pipeline().astream({"trail": []}, config={"callbacks": [monitor]})
        async for _ in stream:
            break
        await stream.aclose()

    asyncio.run(first_chunk_only())

    [run] = stored(monitor)
    assert run.status == "cancelled"
    assert nodes_of(run) == [("plan", "success")]


def test_subgraph_as_node_and_called_from_a_node(monitor: LangGraphMonitor) -> None:
    inner = StateGraph(State)
    inner.add_node("search", step("search"))
    inner.add_edge(START, "search")
    named = inner.compile(name="research")
    unnamed = inner.compile()

    def delegate(state: State) -> dict[str, list[str]]:
        unnamed.invoke({"trail": []})
        return {"trail": ["delegate"]}

    outer = StateGraph(State)
    outer.add_node("research", named)
    outer.add_node("delegate", delegate)
    outer.add_edge(START, "research")
    outer.add_edge("research", "delegate")
    config: Any = {**CONFIG, "callbacks": [monitor]}
    outer.compile(name="outer").invoke({"trail": []}, config=config)

    runs = {run.graph.name: run for run in stored(monitor)}
    assert set(runs) == {"outer", "research", "outer/delegate"}
    top = runs["outer"]
    assert nodes_of(top) == [("research", "success"), ("delegate", "success")]
    for name, node in (("research", "research"), ("outer/delegate", "delegate")):
        child = runs[name]
        assert child.parent_run_id == top.run_id
        assert nodes_of(child) == [("search", "success")]
        assert child.metadata["lgmon_parent_node"] == node
        assert child.user_id == "u-1"
        assert child.duration_ms <= top.node_runs.get(node=node).duration_ms


def test_interrupt_is_interrupted_then_resume_succeeds(monitor: LangGraphMonitor) -> None:
    def ask(state: State) -> dict[str, list[str]]:
        return {"trail": [interrupt("approve?")]}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    graph = builder.compile(name="approval", checkpointer=InMemorySaver())
    config: Any = {"callbacks": [monitor], "configurable": {"thread_id": "t-9"}}

    first = graph.invoke({"trail": []}, config=config)
    assert "__interrupt__" in first
    graph.invoke(Command(resume="yes"), config=config)

    paused, resumed = stored(monitor)
    assert (paused.status, nodes_of(paused)) == ("interrupted", [("ask", "interrupted")])
    assert paused.error == ""
    assert (resumed.status, nodes_of(resumed)) == ("success", [("ask", "success")])
    assert paused.session_id == resumed.session_id == "t-9"


def test_command_to_parent_is_success(monitor: LangGraphMonitor) -> None:
    def escalate(state: State) -> Command[Any]:
        return Command(graph=Command.PARENT, goto="human", update={"trail": ["escalate"]})

    inner = StateGraph(State)
    inner.add_node("escalate", escalate)
    inner.add_edge(START, "escalate")
    outer = StateGraph(State)
    outer.add_node("triage", inner.compile(name="triage"))
    outer.add_node("human", step("human"))
    outer.add_edge(START, "triage")
    result = outer.compile(name="desk").invoke({"trail": []}, config={"callbacks": [monitor]})

    assert result == {"trail": ["escalate", "human"]}
    runs = {run.graph.name: run for run in stored(monitor)}
    assert runs["desk"].status == "success"
    assert nodes_of(runs["desk"]) == [("triage", "success"), ("human", "success")]
    assert runs["triage"].status == "success"
    assert nodes_of(runs["triage"]) == [("escalate", "success")]


def test_failing_node_with_retries_and_cancelled_sibling(monitor: LangGraphMonitor) -> None:
    async def slow(state: State) -> dict[str, list[str]]:
        await asyncio.sleep(5)
        return {"trail": ["slow"]}

    async def flaky(state: State) -> dict[str, list[str]]:
        await asyncio.sleep(0.01)
        raise ValueError("upstream said no")

    builder = StateGraph(State)
    builder.add_node("slow", slow)
    builder.add_node(
        "flaky",
        flaky,
        retry_policy=RetryPolicy(
            max_attempts=3, initial_interval=0.01, jitter=False, retry_on=ValueError
        ),
    )
    builder.add_edge(START, "slow")
    builder.add_edge(START, "flaky")
    graph = builder.compile(name="fanout")

    started = time.monotonic()
    with pytest.raises(ValueError, match="upstream said no"):
        asyncio.run(graph.ainvoke({"trail": []}, config={"callbacks": [monitor]}))
    assert time.monotonic() - started < 4  # the slow branch was cancelled, not awaited

    [run] = stored(monitor)
    assert run.status == "error"
    assert run.error == "ValueError: upstream said no"
    flaky_runs = run.node_runs.filter(node="flaky").order_by("attempt")
    assert [(n.attempt, n.status, n.error) for n in flaky_runs] == [
        (attempt, "error", "ValueError: upstream said no") for attempt in (1, 2, 3)
    ]
    assert run.node_runs.get(node="slow").status == "cancelled"


def test_hundreds_of_concurrent_runs_in_threads_and_asyncio(monitor: LangGraphMonitor) -> None:
    graph = pipeline()

    def one(i: int) -> None:
        config: Any = {"callbacks": [monitor], "metadata": {"user_id": f"t-{i}"}}
        graph.invoke({"trail": []}, config=config)

    async def many() -> None:
        await asyncio.gather(
            *(
                graph.ainvoke(
                    {"trail": []},
                    config={"callbacks": [monitor], "metadata": {"user_id": f"a-{i}"}},
                )
                for i in range(200)
            )
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(200)))
    asyncio.run(many())

    runs = stored(monitor)
    assert len(runs) == 400
    assert {run.user_id for run in runs} == {f"t-{i}" for i in range(200)} | {
        f"a-{i}" for i in range(200)
    }
    assert all(
        nodes_of(run) == [("plan", "success"), ("slow", "success"), ("answer", "success")]
        for run in runs
    )
    assert monitor.open_runs() == 0


def test_installed_globally_sees_graphs_without_callbacks(monitor: LangGraphMonitor) -> None:
    graph = pipeline()
    plain_chain: Any = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)

    with monitor.installed():
        # In another thread: installation is process-wide, not per context.
        worker = threading.Thread(target=graph.invoke, args=({"trail": []},))
        worker.start()
        worker.join(10)
        assert plain_chain.invoke(1) == 4  # not a graph: not reported
    graph.invoke({"trail": []})  # uninstalled again: not reported

    [run] = stored(monitor)
    assert nodes_of(run) == [("plan", "success"), ("slow", "success"), ("answer", "success")]


def test_version_experiment_and_graph_name_from_metadata(sender: Sender) -> None:
    monitor = LangGraphMonitor(sender, version="v-default")
    metadata = {"lgmon_graph": "renamed", "lgmon_experiment": "exp-1", "user_id": 7}
    pipeline().invoke({"trail": []}, config={"callbacks": [monitor], "metadata": metadata})
    pipeline().invoke({"trail": []}, config={"callbacks": [monitor]})

    renamed, default = stored(monitor)
    assert (renamed.graph.name, renamed.version, renamed.experiment) == (
        "renamed",
        "v-default",
        "exp-1",
    )
    assert renamed.user_id == "7"
    assert (default.graph.name, default.version, default.experiment) == (
        "pipeline",
        "v-default",
        "",
    )


def test_server_down_graphs_still_run_and_losses_are_counted(unused_tcp_port: int) -> None:
    sender = Sender(
        f"http://127.0.0.1:{unused_tcp_port}", "lgm_x_y", max_retries=1, backoff=0.01, max_queue=15
    )
    monitor = LangGraphMonitor(sender)
    graph = pipeline()

    for i in range(20):
        config: Any = {"callbacks": [monitor], "metadata": {"user_id": str(i)}}
        assert graph.invoke({"trail": []}, config=config) == {"trail": ["plan", "slow", "answer"]}

    assert sender.flush(timeout=0.5) is False or sender.stats().failed > 0
    sender.close(timeout=5)
    stats = sender.stats()
    assert stats.enqueued == 20
    assert stats.sent == 0
    assert stats.dropped + stats.failed == 20
    assert stats.undelivered == 20
    assert GraphRun.objects.count() == 0


def test_run_ids_are_the_langchain_run_ids(monitor: LangGraphMonitor) -> None:
    run_id = uuid.uuid4()
    pipeline().invoke({"trail": []}, config={"callbacks": [monitor], "run_id": run_id})
    [run] = stored(monitor)
    assert run.run_id == run_id
