"""``LangGraphMonitor``: a langchain-core callback handler that reports LangGraph runs.

LangGraph reports every invocation of a compiled graph, and every task inside it, as a chain
run. A *node run* is a chain run whose name equals its ``metadata["langgraph_node"]`` and that
carries a ``graph:step:N`` tag; runs tagged ``langsmith:hidden`` (``__start__``, routers,
channel writes) are not nodes. A *graph run* is the chain run that node runs hang off: the root
run of ``invoke``/``stream``, and the run of every subgraph, whether the subgraph is a node or
is called from inside one. Each graph run is sent on its own, with its node runs and, for a
subgraph, ``parent_run_id`` pointing at the enclosing graph run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from lgmon_client.sender import Sender, default_sender
from lgmon_client.versions import resolved_for

log = logging.getLogger("lgmon_client")

DEFAULT_GRAPH_NAME = "LangGraph"
MAX_ERROR_CHARS = 4_000
MAX_OPEN_RUNS = 100_000
MAX_METADATA_KEYS = 20
MAX_METADATA_VALUE_CHARS = 500
MAX_ID_CHARS = 255
# Metadata that LangGraph, LangChain or lgmon itself put there, or that has its own field.
_RESERVED_METADATA = ("langgraph_", "checkpoint_", "ls_", "lc_", "lgmon_", "__")
_OWN_FIELDS = frozenset({"user_id", "session_id", "thread_id"})


def status_of(error: BaseException) -> str:
    """The run status for an exception that ended a run (see DESIGN section 4)."""
    for cls in type(error).__mro__:
        name = cls.__name__
        if name == "GraphInterrupt":
            return "interrupted"
        if name == "ParentCommand":
            # Command(graph=PARENT): the node handed control to the parent graph on purpose.
            return "success"
        if name in ("CancelledError", "GeneratorExit"):
            return "cancelled"
    return "error"


def error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:MAX_ERROR_CHARS]


class _GraphRun:
    """A graph run in flight, then finished and queued. Its JSON is built by the sender thread
    (:meth:`payload`), in batches, so the application's thread only records timings."""

    __slots__ = (
        "attempts",
        "capture_metadata",
        "duration_ms",
        "error",
        "experiment",
        "graph",
        "interrupted",
        "lg_node",
        "metadata",
        "name",
        "nodes",
        "parent_run_id",
        "run_id",
        "status",
        "t0",
        "version",
        "wall_offset",
        "weight",
    )

    def __init__(self, run_id: UUID, name: str, metadata: dict[str, Any], t0: float) -> None:
        self.run_id = run_id
        self.name = name
        self.metadata = metadata
        self.lg_node: str | None = metadata.get("langgraph_node")
        self.t0 = t0
        self.attempts: dict[str, int] = {}
        # (run_id, node, status, start, end, attempt, error), times from perf_counter().
        self.nodes: list[tuple[UUID, str, str, float, float, int, str]] = []
        self.interrupted = False
        self.parent_run_id: UUID | None = None  # the enclosing graph run's
        self.graph = self.version = self.experiment = self.status = self.error = ""
        self.duration_ms = self.wall_offset = 0.0
        self.weight = 0
        self.capture_metadata = True

    def payload(self) -> dict[str, Any]:
        metadata = self.metadata
        offset = self.wall_offset
        parent_run_id = self.parent_run_id
        kept = _kept_metadata(metadata) if self.capture_metadata else {}
        if parent_run_id is not None and self.lg_node:
            kept["lgmon_parent_node"] = self.lg_node
        return {
            "run_id": str(self.run_id),
            "parent_run_id": str(parent_run_id) if parent_run_id is not None else None,
            "graph": self.graph[:200],
            "status": self.status,
            "started_at": self.t0 + offset,
            "duration_ms": self.duration_ms,
            "user_id": _id(metadata.get("user_id")),
            "session_id": _id(metadata.get("session_id") or metadata.get("thread_id")),
            "version": self.version[:64],
            "experiment": self.experiment[:200],
            "error": self.error,
            "metadata": kept,
            "node_runs": [
                {
                    "run_id": str(run_id),
                    "node": node,
                    "status": status,
                    "started_at": start + offset,
                    "duration_ms": (end - start) * 1000.0,
                    "attempt": attempt,
                    "error": error,
                }
                for run_id, node, status, start, end, attempt, error in self.nodes
            ],
        }


def _kept_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The user's own scalar metadata, bounded; not LangGraph's, LangChain's or lgmon's."""
    kept: dict[str, Any] = {}
    for key, value in metadata.items():
        if len(kept) >= MAX_METADATA_KEYS:
            break
        if not isinstance(key, str) or key in _OWN_FIELDS or key.startswith(_RESERVED_METADATA):
            continue
        if isinstance(value, str):
            kept[key] = value[:MAX_METADATA_VALUE_CHARS]
        elif value is None or isinstance(value, bool | int | float):
            kept[key] = value
    return kept


# A chain run in flight: (parent_run_id, name, metadata, start, attempt); attempt is 0 for a
# chain run that is not a node run.
_Chain = tuple[UUID | None, str, dict[str, Any], float, int]


class LangGraphMonitor(BaseCallbackHandler):
    """Reports graph runs and node runs of LangGraph graphs to lgmon.

    Attach it per call (``graph.invoke(x, config={"callbacks": [monitor]})``), per graph
    (``graph.with_config(callbacks=[monitor])``) or for every graph in the process
    (:meth:`install`). User and session ids come from ``config["metadata"]`` (``user_id``,
    ``session_id``, else LangGraph's ``thread_id``); ``lgmon_version``, ``lgmon_experiment`` and
    ``lgmon_graph`` there override the version, experiment and graph name given here.
    """

    run_inline = True
    raise_error = False

    def __init__(
        self,
        sender: Sender | None = None,
        *,
        graph_name: str | None = None,
        version: str = "",
        experiment: str = "",
        capture_metadata: bool = True,
    ) -> None:
        super().__init__()
        self.sender = sender if sender is not None else default_sender()
        self.graph_name = graph_name
        self.version = version
        self.experiment = experiment
        self.capture_metadata = capture_metadata
        self._runs: dict[UUID, _Chain] = {}
        self._graphs: dict[UUID, _GraphRun] = {}

    # Only chain runs matter: skip the rest before langchain-core dispatches them.
    @property
    def ignore_llm(self) -> bool:
        return True

    @property
    def ignore_chat_model(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retry(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    # Callbacks ---------------------------------------------------------------------------------
    # Called for every chain run in the process while installed: they only record timings.

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            t0 = perf_counter()
            if metadata is None:
                metadata = {}
            name = kwargs.get("name") or (serialized or {}).get("name") or ""
            runs = self._runs
            attempt = 0
            if tags and parent_run_id in runs and name == metadata.get("langgraph_node"):
                for tag in tags:
                    if tag.startswith("graph:step:"):
                        if "langsmith:hidden" not in tags:
                            attempt = self._node_started(parent_run_id, name, metadata)
                        break
            if len(runs) >= MAX_OPEN_RUNS:
                # Runs whose end never came (an abandoned generator): forget the oldest.
                oldest = next(iter(runs))
                runs.pop(oldest, None)
                self._graphs.pop(oldest, None)
            runs[run_id] = (parent_run_id, name, metadata, t0, attempt)
        except Exception:
            log.debug("lgmon: on_chain_start failed", exc_info=True)

    def _node_started(self, graph_id: Any, name: str, metadata: dict[str, Any]) -> int:
        """Mark the parent as a graph run; the attempt number of this node run."""
        graph = self._graphs.get(graph_id)
        if graph is None:
            # Parallel first nodes may race here: setdefault keeps one graph run.
            _, graph_name, graph_metadata, graph_t0, _ = self._runs[graph_id]
            graph = self._graphs.setdefault(
                graph_id, _GraphRun(graph_id, graph_name, graph_metadata, graph_t0)
            )
        # Retries of one task share its checkpoint namespace.
        task = str(metadata.get("langgraph_checkpoint_ns", name))
        attempt = graph.attempts[task] = graph.attempts.get(task, 0) + 1
        return attempt

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, "success", "")

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        status = status_of(error)
        self._finish(run_id, status, error_text(error) if status == "error" else "")

    # Reporting ---------------------------------------------------------------------------------

    def _finish(self, run_id: UUID, status: str, error: str) -> None:
        try:
            end = perf_counter()
            chain = self._runs.pop(run_id, None)
            if chain is None:
                return
            parent_id, name, _, t0, attempt = chain
            if attempt and parent_id is not None:
                parent = self._graphs.get(parent_id)
                if parent is not None:
                    parent.nodes.append((run_id, name, status, t0, end, attempt, error))
                    if status == "interrupted":
                        parent.interrupted = True
            graph = self._graphs.pop(run_id, None)
            if graph is not None:
                self._graph_finished(graph, parent_id, status, error, end)
        except Exception:
            log.debug("lgmon: reporting a run failed", exc_info=True)

    def _graph_finished(
        self, graph: _GraphRun, parent_id: UUID | None, status: str, error: str, end: float
    ) -> None:
        graph.status = "interrupted" if status == "success" and graph.interrupted else status
        graph.error = error
        graph.duration_ms = (end - graph.t0) * 1000.0
        graph.wall_offset = time.time() - end
        graph.weight = len(graph.nodes)
        enclosing = self._enclosing(parent_id)
        graph.graph = self._reported_name(graph, enclosing)
        if enclosing is not None:
            graph.parent_run_id = enclosing.run_id
        else:
            # The version and experiment in the metadata belong to the top graph.
            metadata = graph.metadata
            version, experiment = self.version, self.experiment
            resolved = resolved_for(graph.graph)  # Client.resolve() earlier in this context
            if resolved is not None:
                version, experiment = str(resolved.version), resolved.experiment_label
            graph.version = str(metadata.get("lgmon_version") or version)
            graph.experiment = str(metadata.get("lgmon_experiment") or experiment)
        graph.capture_metadata = self.capture_metadata
        self.sender.submit("graph_runs", graph)

    def _enclosing(self, parent_id: UUID | None) -> _GraphRun | None:
        """The nearest graph run among the ancestors (all still in flight) of a run."""
        while parent_id is not None:
            graph = self._graphs.get(parent_id)
            if graph is not None:
                return graph
            chain = self._runs.get(parent_id)
            parent_id = chain[0] if chain is not None else None
        return None

    def _reported_name(self, graph: _GraphRun, enclosing: _GraphRun | None) -> str:
        if enclosing is None:
            metadata = graph.metadata
            return str(metadata.get("lgmon_graph") or self.graph_name or graph.name)
        if graph.name == DEFAULT_GRAPH_NAME and graph.lg_node:
            # An unnamed subgraph is known by the node that runs it.
            chain = self._runs.get(enclosing.run_id)
            outer = self._enclosing(chain[0] if chain is not None else None)
            return f"{self._reported_name(enclosing, outer)}/{graph.lg_node}"
        return graph.name

    # Process-wide installation -------------------------------------------------------------------

    def install(self) -> LangGraphMonitor:
        """Attach this monitor to every LangChain/LangGraph run in the process, in every thread."""
        global _installed
        _ensure_hook()
        _installed = self
        return self

    def uninstall(self) -> None:
        global _installed
        if _installed is self:
            _installed = None

    @contextmanager
    def installed(self) -> Iterator[LangGraphMonitor]:
        """Install for the duration of a ``with`` block, then restore what was installed."""
        global _installed
        previous = _installed
        self.install()
        try:
            yield self
        finally:
            _installed = previous

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Deliver every finished run now; see :meth:`Sender.flush`."""
        return self.sender.flush(timeout)

    def open_runs(self) -> int:
        """Chain runs started and not yet ended (for leak checks)."""
        return len(self._runs) + len(self._graphs)


def _id(value: Any) -> str:
    if value is None:
        return ""
    return str(value)[:MAX_ID_CHARS]


_installed: LangGraphMonitor | None = None
_hooked = False


class _InstalledSlot:
    """Stands in for the ``ContextVar`` langchain-core's configure hooks read, so that the
    installed monitor is seen by every thread and task, not only the installing context."""

    def get(self) -> LangGraphMonitor | None:
        return _installed


def _ensure_hook() -> None:
    global _hooked
    if not _hooked:
        register_configure_hook(cast(Any, _InstalledSlot()), inheritable=True)
        _hooked = True
