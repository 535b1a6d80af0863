"""Filters for the dashboards' tables."""

from __future__ import annotations

import math
from typing import Any

from django import template

register = template.Library()

DASH = "–"


@register.filter
def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal (0.1234 → 12.3%); a dash for no figure."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return DASH
    return f"{100 * value:.1f}%"


@register.filter
def ms(value: float | None) -> str:
    """Milliseconds with one decimal and thousands separators; a dash for no figure."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return DASH
    return f"{value:,.1f}"


MAX_INDEX_GRAPHS = 10


@register.simple_tag(takes_context=True)
def dashboard_links(context: template.Context) -> dict[str, Any]:
    """What the admin home's dashboards box offers the signed-in user."""
    from monitoring.models import MetricPoint
    from versioning.models import Graph

    from ..views import may_view

    request = context.get("request")
    if request is None:
        return {"overview": False, "system": False, "graphs": []}
    graphs = may_view(request, Graph)
    return {
        "overview": graphs,
        "system": may_view(request, MetricPoint),
        "graphs": (
            list(Graph.objects.order_by("name").values_list("name", flat=True)[:MAX_INDEX_GRAPHS])
            if graphs
            else []
        ),
    }
