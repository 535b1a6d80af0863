"""Registering graph versions, activating them and rolling back (DESIGN section 7).

Every change of a graph's active version runs in one transaction that first locks the graph's
row, so concurrent activations queue up: each sees the version the previous one made active,
records it as its ``from_version``, and the partial unique constraint
``one_active_version_per_graph`` backs that up in the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from lgmon_client.definition import canonical_json

from .models import Graph, GraphVersion, VersionEvent


class VersionError(Exception):
    """A request the history cannot take (the message says why, for a person)."""


def content_hash(definition: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON: the same as the SDK's ``definition_hash``."""
    return hashlib.sha256(canonical_json(definition).encode()).hexdigest()


@dataclass(frozen=True)
class Registered:
    version: GraphVersion
    created: bool


def register(
    graph_name: str,
    definition: dict[str, Any],
    *,
    description: str = "",
    source: str = "",
    created_by: str = "",
    now: datetime | None = None,
) -> Registered:
    """The version holding ``definition``: an existing one when its content is known, else a
    new one numbered after the graph's last. A graph's first version becomes active."""
    now = now or timezone.now()
    digest = content_hash(definition)
    graph_id = Graph.objects.ids_by_name([graph_name])[graph_name]
    for attempt in range(3):
        try:
            return _register(graph_id, digest, definition, description, source, created_by, now)
        except IntegrityError:
            # Only where rows cannot be locked (SQLite): a racing writer took the number or
            # the content first. Look again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _register(
    graph_id: int,
    digest: str,
    definition: dict[str, Any],
    description: str,
    source: str,
    created_by: str,
    now: datetime,
) -> Registered:
    with transaction.atomic():
        graph = Graph.objects.select_for_update().get(id=graph_id)
        existing = GraphVersion.objects.filter(graph=graph, content_hash=digest).first()
        if existing is not None:
            return Registered(existing, created=False)
        last = GraphVersion.objects.filter(graph=graph).aggregate(last=Max("number"))["last"]
        version = GraphVersion.objects.create(
            graph=graph,
            number=(last or 0) + 1,
            content_hash=digest,
            definition=definition,
            description=description,
            source=source,
            created_by=created_by,
            created_at=now,
        )
        if last is None:
            action = VersionEvent.Action.ACTIVATE
            _switch(graph, version, action, "first version", created_by, now)
        return Registered(version, created=True)


def activate(
    version: GraphVersion, *, actor: str, reason: str = "", now: datetime | None = None
) -> VersionEvent:
    """Make ``version`` the one its graph runs."""
    return _change(version, VersionEvent.Action.ACTIVATE, actor, reason, now)


def rollback(
    version: GraphVersion,
    *,
    actor: str,
    reason: str,
    automatic: bool = False,
    now: datetime | None = None,
) -> VersionEvent:
    """Go back to an earlier version than the active one; a reason is required."""
    if not reason.strip():
        raise VersionError("A rollback needs a reason.")
    action = VersionEvent.Action.AUTO_ROLLBACK if automatic else VersionEvent.Action.ROLLBACK
    return _change(version, action, actor, reason.strip(), now)


def _change(
    version: GraphVersion, action: str, actor: str, reason: str, now: datetime | None
) -> VersionEvent:
    now = now or timezone.now()
    with transaction.atomic():
        graph = Graph.objects.select_for_update().get(id=version.graph_id)
        current = GraphVersion.objects.active().filter(graph=graph).first()
        if current is not None and current.id == version.id:
            raise VersionError(f"{version} is the active version already.")
        if action != VersionEvent.Action.ACTIVATE and (
            current is None or version.number >= current.number
        ):
            active = f"v{current.number}" if current else "none"
            raise VersionError(
                f"Roll back to an earlier version than the active one ({active}); "
                "to move forward, activate."
            )
        return _switch(graph, version, action, reason, actor, now, current)


def _switch(
    graph: Graph,
    version: GraphVersion,
    action: str,
    reason: str,
    actor: str,
    now: datetime,
    current: GraphVersion | None = None,
) -> VersionEvent:
    """Within the caller's transaction, holding the graph's lock."""
    if current is not None:
        GraphVersion.objects.filter(id=current.id).update(is_active=False)
    GraphVersion.objects.filter(id=version.id).update(is_active=True)
    version.is_active = True
    return VersionEvent.objects.create(
        graph=graph,
        from_version=current,
        to_version=version,
        action=action,
        reason=reason,
        actor=actor,
        created_at=now,
    )


# --- diff ----------------------------------------------------------------------------------------


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: per section (nodes, edges, branches, joins,
    state), the items added and removed, and for named items (nodes by name, branches by
    source and name) the ones changed with their fields before and after; any other
    top-level key is reported under ``config``."""
    result: dict[str, Any] = {}
    keyed = {
        "nodes": lambda item: str(item.get("name")),
        "branches": lambda item: f"{item.get('source')}:{item.get('name')}",
    }
    for section in sorted(set(old) | set(new)):
        before, after = old.get(section), new.get(section)
        if before == after:
            continue
        if all(isinstance(value, list) or value is None for value in (before, after)):
            items = [*(before or []), *(after or [])]
            if section in keyed and all(isinstance(item, dict) for item in items):
                result[section] = _keyed_diff(before or [], after or [], keyed[section])
            else:
                result[section] = _list_diff(before or [], after or [])
        else:
            result.setdefault("config", {})[section] = {"before": before, "after": after}
    return result


def _keyed_diff(before: list[Any], after: list[Any], key: Any) -> dict[str, Any]:
    old = {key(item): item for item in before if isinstance(item, dict)}
    new = {key(item): item for item in after if isinstance(item, dict)}
    changed = {}
    for name in sorted(old.keys() & new.keys()):
        if old[name] != new[name]:
            fields = sorted(set(old[name]) | set(new[name]))
            changed[name] = {
                field: {"before": old[name].get(field), "after": new[name].get(field)}
                for field in fields
                if old[name].get(field) != new[name].get(field)
            }
    return {
        "added": [new[name] for name in sorted(new.keys() - old.keys())],
        "removed": [old[name] for name in sorted(old.keys() - new.keys())],
        "changed": changed,
    }


def _list_diff(before: list[Any], after: list[Any]) -> dict[str, Any]:
    old = {canonical_json({"v": item}): item for item in before}
    new = {canonical_json({"v": item}): item for item in after}
    return {
        "added": [new[k] for k in sorted(new.keys() - old.keys())],
        "removed": [old[k] for k in sorted(old.keys() - new.keys())],
    }
