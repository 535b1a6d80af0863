"""The admin dashboards: overview, one graph, system (figures from ``analytics.dashboards``).

Staff only: ``lgmon_site/urls.py`` wraps each view in ``admin.site.admin_view``, which sends
anyone else to the admin login. Beyond that, the run dashboards need the view (or change)
permission on graphs and the system page the one on metric points; the overview lists open
alerts and running experiments only to those who may view them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone

from monitoring.models import Alert, MetricPoint
from versioning.models import Experiment, Graph

from . import dashboards


def may_view(request: HttpRequest, model: type[Any]) -> bool:
    """What the admin's ``has_view_permission`` says: the view or the change permission."""
    opts = model._meta
    user = request.user
    return bool(
        user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
        or user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
    )


def _require(request: HttpRequest, model: type[Any]) -> None:
    if not may_view(request, model):
        raise PermissionDenied


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    request.current_app = admin.site.name
    return {
        **admin.site.each_context(request),
        "title": title,
        "may_view_system": may_view(request, MetricPoint),
        "may_view_graphs": may_view(request, Graph),
        **extra,
    }


def _window(request: HttpRequest) -> dashboards.Window:
    """The window the query asks for; a bad one is said on the page, and 1 h shown instead."""
    now = timezone.now()
    try:
        return dashboards.parse_window(request.GET, now)
    except dashboards.WindowError as exc:
        messages.error(request, f"{exc} Showing the last hour instead.")
        return dashboards.parse_window({}, now)


def _window_links(request: HttpRequest, window: dashboards.Window) -> list[dict[str, Any]]:
    keep = {key: value for key, value in request.GET.items() if key == "node"}
    links = []
    for key in dashboards.WINDOWS:
        query = urlencode({**keep, "window": key})
        links.append({"key": key, "query": query, "current": key == window.key})
    return links


def overview_view(request: HttpRequest) -> TemplateResponse:
    _require(request, Graph)
    data = dashboards.overview(timezone.now())
    if not may_view(request, Alert):
        data["alerts"] = None
    if not may_view(request, Experiment):
        data["experiments"] = None
    context = _context(request, "Dashboards", data=data, chart_data={"charts": data["charts"]})
    return TemplateResponse(request, "admin/analytics/dashboards/overview.html", context)


def graph_view(request: HttpRequest, name: str) -> TemplateResponse:
    _require(request, Graph)
    graph = get_object_or_404(Graph, name=name)
    window = _window(request)
    data = dashboards.graph_page(graph, window, node=request.GET.get("node") or None)
    context = _context(
        request,
        f"Graph {graph.name}",
        graph=graph,
        data=data,
        window=window,
        window_links=_window_links(request, window),
        custom_start=window.start.strftime("%Y-%m-%dT%H:%M"),
        custom_end=window.end.strftime("%Y-%m-%dT%H:%M"),
        chart_data={"charts": data["charts"]},
    )
    return TemplateResponse(request, "admin/analytics/dashboards/graph.html", context)


def system_view(request: HttpRequest) -> TemplateResponse:
    _require(request, MetricPoint)
    window = _window(request)
    data = dashboards.system_page(window)
    context = _context(
        request,
        "System",
        data=data,
        window=window,
        window_links=_window_links(request, window),
        custom_start=window.start.strftime("%Y-%m-%dT%H:%M"),
        custom_end=window.end.strftime("%Y-%m-%dT%H:%M"),
        chart_data={"charts": data["charts"]},
    )
    return TemplateResponse(request, "admin/analytics/dashboards/system.html", context)
