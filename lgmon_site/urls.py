from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from analytics import api as analytics_api
from monitoring import api as monitoring_api
from monitoring import metrics as monitoring_metrics
from versioning import api as versioning_api

router = DefaultRouter()
router.register("graphs", versioning_api.GraphViewSet, basename="graph")
router.register("runs", monitoring_api.GraphRunViewSet, basename="run")
router.register("alerts", monitoring_api.AlertViewSet, basename="alert")
router.register("experiments", versioning_api.ExperimentViewSet, basename="experiment")

api_v1: list[URLPattern | URLResolver] = [
    path("ingest/", monitoring_api.IngestView.as_view(), name="ingest"),
    path("stats/", monitoring_api.StatsView.as_view(), name="stats"),
    path("stats/graphs/", monitoring_api.GraphStatsView.as_view(), name="stats-graphs"),
    path("stats/nodes/", monitoring_api.NodeStatsView.as_view(), name="stats-nodes"),
    path("stats/series/", monitoring_api.SeriesView.as_view(), name="stats-series"),
    path("error-rate/", monitoring_api.ErrorRateView.as_view(), name="error-rate"),
    path(
        "average-duration/",
        monitoring_api.AverageDurationView.as_view(),
        name="average-duration",
    ),
    path("export/runs.csv", monitoring_api.RunsExportView.as_view(), name="export-runs"),
    path(
        "export/node-runs.csv",
        monitoring_api.NodeRunsExportView.as_view(),
        name="export-node-runs",
    ),
    path(
        "analytics/popular-graphs/",
        analytics_api.PopularGraphsView.as_view(),
        name="analytics-popular-graphs",
    ),
    path("analytics/nodes/", analytics_api.NodeUsageView.as_view(), name="analytics-nodes"),
    path(
        "analytics/users/<path:user_id>/",
        analytics_api.UserAnalyticsView.as_view(),
        name="analytics-user",
    ),
    path(
        "analytics/active-users/",
        analytics_api.ActiveUsersView.as_view(),
        name="analytics-active-users",
    ),
    path(
        "graphs/<str:graph_name>/versions/",
        versioning_api.GraphVersionViewSet.as_view({"get": "list", "post": "create"}),
        name="graph-versions",
    ),
    path(
        "graphs/<str:graph_name>/versions/<int:number>/",
        versioning_api.GraphVersionViewSet.as_view({"get": "retrieve"}),
        name="graph-version",
    ),
    path(
        "graphs/<str:graph_name>/versions/<int:number>/activate/",
        versioning_api.GraphVersionViewSet.as_view({"post": "activate"}),
        name="graph-version-activate",
    ),
    path(
        "graphs/<str:graph_name>/versions/<int:number>/rollback/",
        versioning_api.GraphVersionViewSet.as_view({"post": "rollback"}),
        name="graph-version-rollback",
    ),
    path(
        "graphs/<str:graph_name>/versions/<int:number>/diff/",
        versioning_api.GraphVersionViewSet.as_view({"get": "diff"}),
        name="graph-version-diff",
    ),
    path(
        "graphs/<str:graph_name>/history/",
        versioning_api.VersionHistoryView.as_view(),
        name="graph-history",
    ),
    re_path(
        r"^graphs/(?P<graph_name>[^/]+)/resolve/?$",
        versioning_api.ResolveView.as_view(),
        name="graph-resolve",
    ),
    path("", include(router.urls)),
]

urlpatterns = [
    # Before admin/: the admin's catch-all would answer these paths with its own 404.
    path("admin/dashboards/", include("analytics.urls", namespace="dashboards")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    re_path(r"^metrics/?$", monitoring_metrics.metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]
