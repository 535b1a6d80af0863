"""``monitor_performance``: time plain sync or async functions and report them to lgmon.

Each call is reported as a run of a graph named after the function (or the name given), so its
latency percentiles, error rate and throughput show up like a graph's. A monitored function
called from inside another one is reported with ``parent_run_id`` pointing at the caller's run.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar, overload

from lgmon_client.callback import error_text, status_of
from lgmon_client.sender import Sender, default_sender

log = logging.getLogger("lgmon_client")

P = ParamSpec("P")
R = TypeVar("R")

_current_run: ContextVar[str | None] = ContextVar("lgmon_current_run", default=None)


class _Call:
    __slots__ = ("name", "parent", "run_id", "sender", "started_at", "t0", "token")

    def __init__(self, name: str, sender: Sender | None) -> None:
        self.name = name
        self.sender = sender
        self.run_id = str(uuid.uuid4())
        self.parent = _current_run.get()
        self.token = _current_run.set(self.run_id)
        self.started_at = time.time()
        self.t0 = time.perf_counter()

    def done(self, error: BaseException | None, user_id: str, session_id: str) -> None:
        try:
            self._report(error, user_id, session_id)
        except Exception:  # the caller gets its own result or exception, never ours
            log.debug("lgmon: reporting a call failed", exc_info=True)

    def _report(self, error: BaseException | None, user_id: str, session_id: str) -> None:
        duration_ms = round((time.perf_counter() - self.t0) * 1000.0, 3)
        _current_run.reset(self.token)
        status = "success" if error is None else status_of(error)
        (self.sender or default_sender()).submit(
            "graph_runs",
            {
                "run_id": self.run_id,
                "parent_run_id": self.parent,
                "graph": self.name,
                "status": status,
                "started_at": self.started_at,
                "duration_ms": duration_ms,
                "user_id": user_id,
                "session_id": session_id,
                "error": error_text(error) if error is not None and status == "error" else "",
                "node_runs": [],
            },
        )


@overload
def monitor_performance(node_name: Callable[P, R]) -> Callable[P, R]: ...


@overload
def monitor_performance(
    node_name: str | None = None,
    *,
    sender: Sender | None = None,
    user_id: str = "",
    session_id: str = "",
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def monitor_performance(
    node_name: str | Callable[P, R] | None = None,
    *,
    sender: Sender | None = None,
    user_id: str = "",
    session_id: str = "",
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Report every call of the decorated function: its duration, and ``error`` with the
    exception's text when it raises (the exception still reaches the caller).

    Works on plain and ``async`` functions, with or without arguments::

        @monitor_performance("data_processor")
        async def process(state): ...

        @monitor_performance
        def score(text): ...
    """
    if callable(node_name):
        return monitor_performance()(node_name)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = node_name or f"{func.__module__}.{func.__qualname__}"

        if inspect.iscoroutinefunction(func):
            async_func: Callable[P, Awaitable[Any]] = func

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                call = _Call(name, sender)
                try:
                    result = await async_func(*args, **kwargs)
                except BaseException as exc:
                    call.done(exc, user_id, session_id)
                    raise
                call.done(None, user_id, session_id)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            call = _Call(name, sender)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                call.done(exc, user_id, session_id)
                raise
            call.done(None, user_id, session_id)
            return result

        return wrapper

    return decorate
