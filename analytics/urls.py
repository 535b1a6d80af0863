"""The dashboards' URLs, mounted at ``admin/dashboards/`` (namespace ``dashboards``), each view
behind the admin's login (``admin.site.admin_view``)."""

from django.contrib import admin
from django.urls import URLPattern, path

from . import views

app_name = "dashboards"

urlpatterns: list[URLPattern] = [
    path("", admin.site.admin_view(views.overview_view), name="overview"),
    path("graphs/<path:name>/", admin.site.admin_view(views.graph_view), name="graph"),
    path("system/", admin.site.admin_view(views.system_view), name="system"),
]
