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
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from lgmon_client.sender import Sender, default_sender

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


class _Run:
    """One chain run in flight. Only runs that turn out to be nodes or graphs are reported."""

    __slots__ = (
        "attempt",
        "attempts",
        "interrupted",
        "is_graph",
        "is_node",
        "lg_node",
        "metadata",
        "name",
        "node_runs",
        "parent",
        "run_id",
        "started_at",
        "t0",
    )

    def __init__(
        self,
        run_id: UUID,
        parent: _Run | None,
        name: str,
        metadata: dict[str, Any],
        lg_node: str | None,
        is_node: bool,
    ) -> None:
        self.run_id = run_id
        self.parent = parent
        self.name = name
        self.metadata = metadata
        self.lg_node = lg_node
        self.is_node = is_node
        self.is_graph = False
        self.interrupted = False
        self.attempt = 1
        self.attempts: dict[str, int] | None = None
        self.node_runs: list[dict[str, Any]] | None = None
        self.started_at = time.time()
        self.t0 = time.perf_counter()

    def enclosing_graph(self) -> _Run | None:
        run = self.parent
        while run is not None and not run.is_graph:
            run = run.parent
        return run


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
        self._runs: dict[UUID, _Run] = {}

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
            metadata = metadata or {}
            name = kwargs.get("name") or (serialized or {}).get("name") or ""
            lg_node = metadata.get("langgraph_node")
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
            is_node = (
                parent is not None
                and lg_node == name
                and tags is not None
                and "langsmith:hidden" not in tags
                and any(tag.startswith("graph:step:") for tag in tags)
            )
            run = _Run(run_id, parent, name, metadata, lg_node, is_node)
            if is_node:
                assert parent is not None
                parent.is_graph = True
                # Retries of one task share its checkpoint namespace.
                task = str(metadata.get("langgraph_checkpoint_ns", name))
                attempts = parent.attempts
                if attempts is None:
                    attempts = parent.attempts = {}
                run.attempt = attempts[task] = attempts.get(task, 0) + 1
            runs = self._runs
            if len(runs) >= MAX_OPEN_RUNS:
                # Runs whose end never came (an abandoned generator): forget the oldest.
                runs.pop(next(iter(runs)), None)
            runs[run_id] = run
        except Exception:
            log.debug("lgmon: on_chain_start failed", exc_info=True)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._finish(run_id, "success", "")

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        status = status_of(error)
        self._finish(run_id, status, error_text(error) if status == "error" else "")

    # Reporting ---------------------------------------------------------------------------------

    def _finish(self, run_id: UUID, status: str, error: str) -> None:
        try:
            run = self._runs.pop(run_id, None)
            if run is None or not (run.is_node or run.is_graph):
                return
            duration_ms = round((time.perf_counter() - run.t0) * 1000.0, 3)
            if run.is_node:
                graph = run.parent
                assert graph is not None
                if status == "interrupted":
                    graph.interrupted = True
                node_run = {
                    "run_id": str(run_id),
                    "node": run.name,
                    "status": status,
                    "started_at": run.started_at,
                    "duration_ms": duration_ms,
                    "attempt": run.attempt,
                    "error": error,
                }
                if graph.node_runs is None:
                    graph.node_runs = [node_run]
                else:
                    graph.node_runs.append(node_run)
            if run.is_graph:
                if status == "success" and run.interrupted:
                    status = "interrupted"
                self.sender.submit("graph_runs", self._graph_run(run, status, duration_ms, error))
        except Exception:
            log.debug("lgmon: reporting a run failed", exc_info=True)

    def _graph_run(self, run: _Run, status: str, duration_ms: float, error: str) -> dict[str, Any]:
        metadata = run.metadata
        enclosing = run.enclosing_graph()
        if enclosing is None:
            version = metadata.get("lgmon_version", self.version)
            experiment = metadata.get("lgmon_experiment", self.experiment)
        else:
            # The version and experiment in the metadata belong to the top graph.
            version = experiment = ""
        return {
            "run_id": str(run.run_id),
            "parent_run_id": str(enclosing.run_id) if enclosing is not None else None,
            "graph": self._graph_name(run, enclosing)[:200],
            "status": status,
            "started_at": run.started_at,
            "duration_ms": duration_ms,
            "user_id": _id(metadata.get("user_id")),
            "session_id": _id(metadata.get("session_id") or metadata.get("thread_id")),
            "version": str(version or "")[:64],
            "experiment": str(experiment or "")[:200],
            "error": error,
            "metadata": self._metadata(metadata, run.lg_node if enclosing else None),
            "node_runs": run.node_runs or [],
        }

    def _graph_name(self, run: _Run, enclosing: _Run | None) -> str:
        if enclosing is None:
            return str(run.metadata.get("lgmon_graph") or self.graph_name or run.name)
        if run.name == DEFAULT_GRAPH_NAME and run.lg_node:
            # An unnamed subgraph is known by the node that runs it.
            return f"{self._graph_name(enclosing, enclosing.enclosing_graph())}/{run.lg_node}"
        return run.name

    def _metadata(self, metadata: dict[str, Any], parent_node: str | None) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        if parent_node:
            kept["lgmon_parent_node"] = parent_node
        if not self.capture_metadata:
            return kept
        for key, value in metadata.items():
            if len(kept) >= MAX_METADATA_KEYS:
                break
            if key in _OWN_FIELDS or key.startswith(_RESERVED_METADATA):
                continue
            if isinstance(value, str):
                kept[key] = value[:MAX_METADATA_VALUE_CHARS]
            elif value is None or isinstance(value, bool | int | float):
                kept[key] = value
        return kept

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
        return len(self._runs)


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
