from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.utils import timezone


class GraphQuerySet(models.QuerySet["Graph"]):
    def ids_by_name(self, names: Iterable[str]) -> dict[str, int]:
        """Map graph names to ids, creating the graphs not seen before (safe under concurrency)."""
        wanted = set(names)
        found = dict(self.filter(name__in=wanted).values_list("name", "id"))
        missing = wanted - found.keys()
        if missing:
            now = timezone.now()
            self.bulk_create(
                [Graph(name=name, created_at=now) for name in sorted(missing)],
                ignore_conflicts=True,
            )
            found.update(self.filter(name__in=missing).values_list("name", "id"))
        return found


class Graph(models.Model):
    """One LangGraph graph, by the name the app gives it. Created on first sight by ingest."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = GraphQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VersionQuerySet(models.QuerySet["GraphVersion"]):
    def active(self) -> VersionQuerySet:
        return self.filter(is_active=True)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ImmutableVersion("Graph versions are never deleted.")


class GraphVersion(models.Model):
    """One immutable definition of a graph: numbered per graph, keyed by the SHA-256 of its
    canonical JSON. Only ``is_active`` ever changes, through ``versioning.services``."""

    graph = models.ForeignKey(Graph, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(editable=False)
    content_hash = models.CharField(max_length=64, editable=False)
    definition = models.JSONField(editable=False)
    description = models.TextField(blank=True)
    source = models.CharField(
        max_length=100, blank=True, help_text="Where it came from, e.g. a git commit sha."
    )
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    is_active = models.BooleanField(default=False, editable=False)

    objects = VersionQuerySet.as_manager()

    class Meta:
        ordering = ["graph", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["graph", "number"], name="version_number_per_graph"),
            models.UniqueConstraint(
                fields=["graph", "content_hash"], name="version_content_per_graph"
            ),
            models.UniqueConstraint(
                fields=["graph"],
                condition=models.Q(is_active=True),
                name="one_active_version_per_graph",
            ),
        ]
        permissions = [("activate_graphversion", "Can activate and roll back graph versions")]

    def __str__(self) -> str:
        return f"{self.graph.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ImmutableVersion("A graph version is never edited; register a new one.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableVersion("A graph version is never deleted.")


class ImmutableVersion(Exception):
    pass


class VersionEvent(models.Model):
    """Append-only history of which version a graph runs: every activation and rollback."""

    class Action(models.TextChoices):
        ACTIVATE = "activate"
        ROLLBACK = "rollback"
        AUTO_ROLLBACK = "auto_rollback", "automatic rollback"

    graph = models.ForeignKey(Graph, on_delete=models.PROTECT, related_name="version_events")
    from_version = models.ForeignKey(
        GraphVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(GraphVersion, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["graph", "-created_at"], name="versionevent_graph_time")]

    def __str__(self) -> str:
        before = f"v{self.from_version.number}" if self.from_version else "none"
        return f"{self.graph.name}: {self.action} {before} → v{self.to_version.number}"


def _new_salt() -> str:
    from .assignment import new_salt

    return new_salt()


class Experiment(models.Model):
    """An A/B test between versions of one graph. Units (users, or sessions without a user)
    are split by GrowthBook's hash of ``salt`` + unit id, so every process agrees."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        STOPPED = "stopped"

    graph = models.ForeignKey(Graph, on_delete=models.PROTECT, related_name="experiments")
    key = models.SlugField(max_length=100, unique=True, help_text="Reported with every run.")
    hypothesis = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    salt = models.CharField(max_length=64, default=_new_salt, editable=False)
    coverage = models.FloatField(
        default=1.0, help_text="Share of units in the experiment (0-1); the rest get the active."
    )
    min_units = models.PositiveIntegerField(
        default=100, help_text="Units per variant before any verdict."
    )
    guardrails = models.BooleanField(
        default=True,
        help_text="Stop and roll back when a treatment's error rate or latency is "
        "significantly worse.",
    )
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    stopped_reason = models.TextField(blank=True, editable=False)
    sequential = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Running minimum of each always-valid p-value over every look.",
    )
    created_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["graph"],
                condition=models.Q(status="running"),
                name="one_running_experiment_per_graph",
            ),
            models.CheckConstraint(
                condition=models.Q(coverage__gte=0, coverage__lte=1), name="experiment_coverage"
            ),
        ]

    def __str__(self) -> str:
        return self.key


class Variant(models.Model):
    """One arm of an experiment: position 0 is the control."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=50)
    version = models.ForeignKey(GraphVersion, on_delete=models.PROTECT, related_name="+")
    weight = models.FloatField(default=0.5)

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "position"], name="variant_position"),
            models.UniqueConstraint(fields=["experiment", "name"], name="variant_name"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key}:{self.name}"


class Assignment(models.Model):
    """A unit's variant, stored the first time it is resolved so it never changes."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    unit = models.CharField(max_length=255)
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="assignments")
    assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "unit"], name="assignment_unit")
        ]

    def __str__(self) -> str:
        return f"{self.unit} → {self.variant}"
