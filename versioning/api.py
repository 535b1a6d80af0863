from __future__ import annotations

from rest_framework import viewsets
from rest_framework.pagination import CursorPagination

from .models import Graph
from .serializers import GraphSerializer


class ByName(CursorPagination):
    ordering = "name"


class GraphViewSet(viewsets.ReadOnlyModelViewSet[Graph]):
    """Every graph lgmon has seen, by name."""

    queryset = Graph.objects.all()
    serializer_class = GraphSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    pagination_class = ByName
