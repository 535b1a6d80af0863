"""``graph_definition`` and ``definition_hash``: what a graph version is keyed by."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from examples.support_app import build_graph
from lgmon_client import canonical_json, definition_hash, graph_definition

ROOT = Path(__file__).resolve().parents[2]


class State(TypedDict):
    trail: Annotated[list[str], operator.add]


def node(state: State) -> dict[str, Any]:
    return {}


def router(state: State) -> str:
    return "b" if state["trail"] and state["trail"][-1] in {"x", "y", "z"} else END


def router_changed(state: State) -> str:
    return "b" if state["trail"] and state["trail"][-1] in {"x", "y"} else END


def diamond(*, router_func: Any = router, join: bool = True, extra_edge: bool = False) -> Any:
    builder: Any = StateGraph(State)
    for name in ("a", "b", "c", "d"):
        builder.add_node(name, node)
    builder.add_edge(START, "a")
    builder.add_edge(START, "c")
    builder.add_conditional_edges("a", router_func, ["b", END])
    if join:
        builder.add_edge(["b", "c"], "d")
    else:
        builder.add_edge("c", "d")
    if extra_edge:
        builder.add_edge("d", END)
    return builder.compile(name="diamond")


def test_definition_lists_nodes_edges_branches_joins_and_subgraphs() -> None:
    definition = graph_definition(build_graph())

    assert definition["name"] == "support-bot"
    assert [n["name"] for n in definition["nodes"]] == [
        "classify",
        "draft_answer",
        "lookup_account",
        "research",
    ]
    assert definition["nodes"][0]["callable"] == "examples.support_app.classify"
    assert ["__start__", "classify"] in definition["edges"]
    [branch] = definition["branches"]
    assert branch["source"] == "classify"
    assert branch["router"] == "examples.support_app.route"
    assert len(branch["code"]) == 64
    assert branch["targets"] == {
        "draft_answer": "draft_answer",
        "lookup_account": "lookup_account",
        "research": "research",
    }
    research = next(n for n in definition["nodes"] if n["name"] == "research")
    assert research["subgraph"]["name"] == "research"
    assert research["subgraph"]["edges"] == [
        ["__start__", "search_docs"],
        ["search_docs", "rank_docs"],
    ]
    assert graph_definition(diamond())["joins"] == [{"sources": ["b", "c"], "target": "d"}]
    json.loads(canonical_json(definition))  # plain JSON all the way down


def test_hash_is_stable_within_and_across_processes_and_hash_seeds() -> None:
    here = definition_hash(build_graph())
    assert (
        here == definition_hash(build_graph()) == definition_hash(graph_definition(build_graph()))
    )
    script = (
        "from examples.support_app import build_graph\n"
        "from tests.sdk.test_definition import diamond\n"
        "from lgmon_client import definition_hash\n"
        "print(definition_hash(build_graph()), definition_hash(diamond()))\n"
    )
    seen = set()
    for seed in ("0", "1", "4242", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        seen.add(tuple(out))
    assert seen == {(here, definition_hash(diamond()))}


def test_hash_changes_with_any_edge_join_or_router() -> None:
    base = definition_hash(diamond())
    variants = {
        "router code": definition_hash(diamond(router_func=router_changed)),
        "join became an edge": definition_hash(diamond(join=False)),
        "extra edge": definition_hash(diamond(extra_edge=True)),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_subgraph_changes_change_the_parent_hash() -> None:
    def with_inner(second: str) -> Any:
        inner: Any = StateGraph(State)
        inner.add_node("one", node)
        inner.add_node(second, node)
        inner.add_edge(START, "one")
        inner.add_edge("one", second)
        outer: Any = StateGraph(State)
        outer.add_node("sub", inner.compile(name="inner"))
        outer.add_edge(START, "sub")
        return outer.compile(name="outer")

    assert definition_hash(with_inner("two")) == definition_hash(with_inner("two"))
    assert definition_hash(with_inner("two")) != definition_hash(with_inner("three"))
