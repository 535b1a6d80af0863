from __future__ import annotations

from rest_framework import serializers

from .models import Graph


class GraphSerializer(serializers.ModelSerializer[Graph]):
    class Meta:
        model = Graph
        fields = ["name", "description", "created_at"]
