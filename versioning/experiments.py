"""Which version a graph should run for a unit: the active one, or its variant of a running
experiment (DESIGN section 8).

A unit is the user id, or the session id when there is no user. Its variant comes from
GrowthBook's hash (``assignment.assign``) and is stored the first time, so it sticks even if
the weights are edited later. A request with neither id gets a random variant that is not
stored. Units outside the experiment's coverage run the active version and are not stored, so
widening the coverage brings them in without moving anyone already in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from . import assignment
from .models import Assignment, Experiment, Graph, GraphVersion, Variant


class NoActiveVersion(Exception):
    pass


class ExperimentError(Exception):
    """An experiment that cannot start or stop as asked (the message says why)."""


@dataclass(frozen=True)
class Resolution:
    graph: str
    version: GraphVersion
    experiment: Experiment | None = None
    variant: Variant | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "version": self.version.number,
            "content_hash": self.version.content_hash,
            "experiment": self.experiment.key if self.experiment else None,
            "variant": self.variant.name if self.variant else None,
        }


def resolve(graph: Graph, *, user_id: str = "", session_id: str = "") -> Resolution:
    active = GraphVersion.objects.active().filter(graph=graph).first()
    experiment = Experiment.objects.filter(graph=graph, status=Experiment.Status.RUNNING).first()
    if experiment is None:
        if active is None:
            raise NoActiveVersion(f"{graph.name} has no active version.")
        return Resolution(graph.name, active)
    variants = list(experiment.variants.select_related("version"))
    unit = user_id or session_id
    variant = _variant_for(experiment, variants, unit)
    if variant is None:
        if active is None:
            raise NoActiveVersion(f"{graph.name} has no active version.")
        return Resolution(graph.name, active)
    return Resolution(graph.name, variant.version, experiment, variant)


def _weights(variants: list[Variant]) -> list[float]:
    total = sum(max(0.0, v.weight) for v in variants)
    if total <= 0:
        return assignment.equal_weights(len(variants))
    return [max(0.0, v.weight) / total for v in variants]


def _variant_for(experiment: Experiment, variants: list[Variant], unit: str) -> Variant | None:
    ranges = assignment.bucket_ranges(_weights(variants), experiment.coverage)
    if not unit:
        index = assignment.choose_variant(random.random(), ranges)  # anonymous: not stored
        return None if index is None else variants[index]
    stored = Assignment.objects.filter(experiment=experiment, unit=unit).first()
    if stored is not None:
        return next((v for v in variants if v.id == stored.variant_id), None)
    index = assignment.choose_variant(assignment.hash_v2(experiment.salt, unit), ranges)
    if index is None:
        return None
    variant = variants[index]
    try:
        with transaction.atomic():
            Assignment.objects.create(experiment=experiment, unit=unit, variant=variant)
    except IntegrityError:  # a concurrent request stored it first: theirs stands
        stored = Assignment.objects.get(experiment=experiment, unit=unit)
        return next((v for v in variants if v.id == stored.variant_id), None)
    return variant


def start(experiment: Experiment, *, now: datetime) -> None:
    """Start a draft experiment, once its variants make sense."""
    if experiment.status != Experiment.Status.DRAFT:
        raise ExperimentError(f"{experiment.key} is {experiment.status}; only a draft starts.")
    variants = list(experiment.variants.select_related("version"))
    if len(variants) < 2:
        raise ExperimentError("An experiment needs at least two variants.")
    if any(v.version.graph_id != experiment.graph_id for v in variants):
        raise ExperimentError("Every variant must be a version of the experiment's graph.")
    if any(v.weight <= 0 for v in variants):
        raise ExperimentError("Every variant needs a weight above zero.")
    try:
        with transaction.atomic():
            updated = Experiment.objects.filter(
                id=experiment.id, status=Experiment.Status.DRAFT
            ).update(status=Experiment.Status.RUNNING, started_at=now)
    except IntegrityError as exc:
        raise ExperimentError(
            f"{experiment.graph.name} has a running experiment already; stop it first."
        ) from exc
    if not updated:
        raise ExperimentError(f"{experiment.key} is not a draft any more.")
    experiment.refresh_from_db()


def stop(experiment: Experiment, *, now: datetime, reason: str = "") -> bool:
    """Stop a running experiment; False when it was not running."""
    updated = Experiment.objects.filter(id=experiment.id, status=Experiment.Status.RUNNING).update(
        status=Experiment.Status.STOPPED, ended_at=now, stopped_reason=reason
    )
    experiment.refresh_from_db()
    return bool(updated)
