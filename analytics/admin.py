from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from . import queries
from .models import UsageReport


class UsageFilterForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=400, initial=7, required=False)
    graph = forms.CharField(max_length=200, required=False)
    user_id = forms.CharField(max_length=255, required=False, label="User id")


@admin.register(UsageReport)
class UsageReportAdmin(admin.ModelAdmin[UsageReport]):
    """The seed's ``UsageAnalytics`` as a page: popular graphs, node usage, active users and
    one user's history, over the last N days."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsageFilterForm(request.GET or {"days": 7})
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Usage analytics",
            "opts": self.model._meta,
            "form": form,
        }
        if form.is_valid():
            end = timezone.now()
            start = end - timedelta(days=form.cleaned_data["days"] or 7)
            graph = form.cleaned_data["graph"] or None
            user_id = form.cleaned_data["user_id"]
            context.update(
                start=start,
                end=end,
                popular=queries.popular_graphs(start, end, limit=20),
                nodes=queries.node_usage(start, end, graph)[:50],
                active=queries.active_users(start, end, graph),
                user=queries.user_analytics(user_id, start, end) if user_id else None,
            )
        return TemplateResponse(request, "admin/analytics/usage.html", context)


# The admin home with a box of links to the dashboards (analytics.views) above the apps.
admin.site.index_template = "admin/analytics/index.html"
