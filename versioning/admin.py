from __future__ import annotations

from django.contrib import admin

from .models import Graph


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin[Graph]):
    list_display = ["name", "created_at"]
    search_fields = ["name", "description"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]
