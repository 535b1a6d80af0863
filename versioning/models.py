from __future__ import annotations

from collections.abc import Iterable

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
