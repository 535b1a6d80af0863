"""A compiled graph's structure as canonical JSON, and its SHA-256: the key of a graph version.

The definition holds the nodes (with the callable behind each), the fixed edges, the
conditional branches (router callable, a fingerprint of the router's code, and its declared
targets), the joins (an edge that waits for several nodes) and every subgraph, recursively. It
holds nothing that depends on the process: no ids, addresses or set orders, so the hash is the
same in every process and under every ``PYTHONHASHSEED``, and changes when an edge, a join or a
router's code changes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import textwrap
import types
from collections.abc import Mapping
from typing import Any

START = "__start__"
END = "__end__"


def graph_definition(graph: Any) -> dict[str, Any]:
    """The definition of a compiled LangGraph graph (``StateGraph(...).compile()``).

    Built from the graph's builder where there is one (conditional branches and joins are only
    known there), else from ``graph.get_graph()``.
    """
    builder = getattr(graph, "builder", None)
    if builder is not None and hasattr(builder, "branches"):
        return _from_builder(graph, builder)
    return _from_drawable(graph)


def canonical_json(definition: Mapping[str, Any]) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_hash(graph_or_definition: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a definition, or of a compiled graph's."""
    if isinstance(graph_or_definition, Mapping):
        definition = graph_or_definition
    else:
        definition = graph_definition(graph_or_definition)
    return hashlib.sha256(canonical_json(definition).encode()).hexdigest()


def _from_builder(graph: Any, builder: Any) -> dict[str, Any]:
    subgraphs = _subgraphs(graph)
    nodes = []
    for name, spec in builder.nodes.items():
        node: dict[str, Any] = {"name": name, "callable": _runnable_name(spec.runnable)}
        if getattr(spec, "defer", False):
            node["defer"] = True
        if name in subgraphs:
            node["subgraph"] = graph_definition(subgraphs[name])
        nodes.append(node)
    branches = []
    for source, by_name in builder.branches.items():
        for name, branch in by_name.items():
            ends = branch.ends
            branches.append(
                {
                    "source": source,
                    "name": name,
                    "router": _runnable_name(branch.path),
                    "code": _code_fingerprint(branch.path),
                    "targets": None if ends is None else {str(k): v for k, v in ends.items()},
                }
            )
    state = getattr(builder, "state_schema", None)
    return {
        "name": graph.get_name(),
        "state": sorted(getattr(state, "__annotations__", {})),
        "nodes": sorted(nodes, key=lambda n: n["name"]),
        "edges": sorted([list(edge) for edge in builder.edges]),
        "branches": sorted(branches, key=lambda b: (b["source"], b["name"])),
        "joins": sorted(
            [{"sources": sorted(starts), "target": end} for starts, end in builder.waiting_edges],
            key=lambda j: (j["target"], j["sources"]),
        ),
    }


def _from_drawable(graph: Any) -> dict[str, Any]:
    drawable = graph.get_graph()
    subgraphs = _subgraphs(graph)
    nodes = []
    for node_id, node in drawable.nodes.items():
        if node_id in (START, END):
            continue
        entry: dict[str, Any] = {"name": node_id, "callable": _runnable_name(node.data)}
        if node_id in subgraphs:
            entry["subgraph"] = graph_definition(subgraphs[node_id])
        nodes.append(entry)
    edges = sorted([e.source, e.target, bool(e.conditional), e.data or ""] for e in drawable.edges)
    return {
        "name": graph.get_name() if hasattr(graph, "get_name") else type(graph).__name__,
        "nodes": sorted(nodes, key=lambda n: n["name"]),
        "edges": edges,
    }


def _subgraphs(graph: Any) -> dict[str, Any]:
    """Subgraphs by the node that runs them: as the node itself, or called from its function."""
    try:
        found = graph.get_subgraphs()
    except (AttributeError, TypeError, ValueError):
        return {}
    subgraphs: dict[str, Any] = {}
    for namespace, subgraph in found:
        subgraphs.setdefault(namespace.split("|")[0].split(":")[0], subgraph)
    return subgraphs


def _runnable_name(runnable: Any) -> str:
    """``module.qualname`` of the function behind a runnable, else its class and name."""
    if runnable is None:
        return ""
    func = getattr(runnable, "func", None) or getattr(runnable, "afunc", None)
    target = func if func is not None else runnable
    target = inspect.unwrap(target) if callable(target) else target
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if module and qualname and isinstance(target, types.FunctionType | types.MethodType):
        return f"{module}.{qualname}"
    cls = type(runnable)
    name = runnable.get_name() if hasattr(runnable, "get_name") else ""
    return f"{cls.__module__}.{cls.__qualname__}:{name}"


def _code_fingerprint(runnable: Any) -> str:
    """SHA-256 of a router's source (dedented), or of its compiled code when there is no
    source; empty when the router is not a Python function."""
    func = getattr(runnable, "func", None) or getattr(runnable, "afunc", None) or runnable
    func = inspect.unwrap(func) if callable(func) else func
    if not isinstance(func, types.FunctionType | types.MethodType):
        return ""
    try:
        text = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        text = _code_text(func.__code__)
    return hashlib.sha256(text.encode()).hexdigest()


def _code_text(code: types.CodeType) -> str:
    """A process-independent rendering of a code object (frozenset constants are sorted)."""

    def const(value: Any) -> str:
        if isinstance(value, types.CodeType):
            return _code_text(value)
        if isinstance(value, frozenset):
            return "frozenset(" + ",".join(sorted(const(v) for v in value)) + ")"
        if isinstance(value, tuple):
            return "(" + ",".join(const(v) for v in value) + ")"
        return repr(value)

    consts = ",".join(const(c) for c in code.co_consts)
    return f"{code.co_code.hex()}|{consts}|{','.join(code.co_names)}"
