from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from monitoring.models import HourRollup, RunStatus

from .models import Graph


def _runs_last_24h(status: str | None = None) -> Coalesce:
    """Graph runs of the last 24 whole hours, summed from the hour rollups."""
    rows = HourRollup.objects.filter(
        graph=OuterRef("pk"), node="", bucket_start__gte=timezone.now() - timedelta(hours=24)
    )
    if status is not None:
        rows = rows.filter(status=status)
    total = rows.values("graph").annotate(total=Sum("count")).values("total")
    return Coalesce(Subquery(total, output_field=IntegerField()), 0)


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin[Graph]):
    list_display = ["name", "runs_24h", "error_rate_24h", "created_at"]
    search_fields = ["name", "description"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Graph]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                runs_24h=_runs_last_24h(),
                errors_24h=_runs_last_24h(RunStatus.ERROR),
            )
        )

    @admin.display(description="runs (24 h)", ordering="runs_24h")
    def runs_24h(self, obj: Graph) -> int:
        return int(getattr(obj, "runs_24h", 0))

    @admin.display(description="error rate (24 h)")
    def error_rate_24h(self, obj: Graph) -> str:
        runs = int(getattr(obj, "runs_24h", 0))
        errors = int(getattr(obj, "errors_24h", 0))
        return f"{100 * errors / runs:.1f}%" if runs else "-"
