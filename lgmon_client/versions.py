"""Graph versions from the app's side: register a compiled graph's definition, and ask which
version to run for a user (the active one, or their variant of a running A/B test).

::

    from lgmon_client import Client

    client = Client()  # LGMON_URL and LGMON_API_KEY from the environment
    client.register(graph, name="support-bot", source=os.environ.get("GIT_SHA", ""))

    resolved = client.resolve("support-bot", user_id=user.id)
    graph = GRAPHS[resolved.version]           # the app maps version numbers to code
    graph.invoke(state, config={"callbacks": [monitor], "metadata": {"user_id": user.id}})

After ``resolve``, runs of that graph in the same context (thread, or asyncio task) are
reported with the resolved version and experiment automatically; ``resolved.metadata`` gives
the same keys for a ``config["metadata"]`` when runs happen elsewhere. Answers are cached per
(graph, user, session) for ``cache_ttl`` seconds; a unit's variant is sticky on the server, so
the cache never contradicts it.
"""

from __future__ import annotations

import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import requests

from lgmon_client.definition import graph_definition
from lgmon_client.sender import DEFAULT_URL


class LgmonError(Exception):
    """The server could not answer (network error, or an error status with its detail)."""


@dataclass(frozen=True)
class Resolution:
    graph: str
    version: int
    content_hash: str
    experiment: str | None = None
    variant: str | None = None

    @property
    def experiment_label(self) -> str:
        """``<experiment>:<variant>`` as runs report it ("" outside an experiment): the
        variant's name, not only its version, since two variants may run one version."""
        return f"{self.experiment}:{self.variant}" if self.experiment else ""

    @property
    def metadata(self) -> dict[str, str]:
        """What to put in ``config["metadata"]`` so a run reports this version."""
        return {"lgmon_version": str(self.version), "lgmon_experiment": self.experiment_label}


_resolved: ContextVar[dict[str, Resolution] | None] = ContextVar("lgmon_resolved", default=None)


def resolved_for(graph: str) -> Resolution | None:
    """The last resolution of ``graph`` in the current context, if any."""
    found = _resolved.get()
    return None if found is None else found.get(graph)


class Client:
    """Version registration and resolution against an lgmon server."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 5.0,
        cache_ttl: float = 30.0,
    ) -> None:
        self.base = (url or os.environ.get("LGMON_URL") or DEFAULT_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("LGMON_API_KEY", "")
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self._cache: dict[tuple[str, str, str], tuple[float, Resolution]] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"Client({self.base!r})"

    def register(
        self, graph: Any, *, name: str | None = None, description: str = "", source: str = ""
    ) -> dict[str, Any]:
        """Register a compiled graph's definition (or a definition dict) as a version of the
        graph ``name`` (default: the graph's own name). Registering a known definition returns
        its existing version. Needs an API key with the manage scope."""
        definition = graph if isinstance(graph, dict) else graph_definition(graph)
        graph_name = name or str(definition.get("name") or "")
        if not graph_name:
            raise ValueError("Name the graph: register(graph, name=...).")
        body = {"definition": definition, "description": description, "source": source}
        answer: dict[str, Any] = self._call(
            "POST", f"/api/v1/graphs/{graph_name}/versions/", json=body
        )
        return answer

    def resolve(
        self, graph: str, *, user_id: str | None = None, session_id: str | None = None
    ) -> Resolution:
        """The version to run for this user (or session): cached for ``cache_ttl`` seconds."""
        key = (graph, user_id or "", session_id or "")
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            resolution = cached[1]
        else:
            params = {"user_id": user_id or "", "session_id": session_id or ""}
            body = self._call("GET", f"/api/v1/graphs/{graph}/resolve", params=params)
            resolution = Resolution(
                graph=str(body["graph"]),
                version=int(body["version"]),
                content_hash=str(body["content_hash"]),
                experiment=body.get("experiment"),
                variant=body.get("variant"),
            )
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (now + self.cache_ttl, resolution)
        _resolved.set({**(_resolved.get() or {}), graph: resolution})
        return resolution

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        try:
            response = self._session.request(
                method, self.base + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise LgmonError(f"lgmon unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                detail: Any = response.json()
            except ValueError:
                detail = response.text[:200]
            raise LgmonError(f"HTTP {response.status_code} from lgmon: {detail}")
        return response.json()
