from __future__ import annotations

from versioning.models import Graph


class UsageReport(Graph):
    """No table of its own: gives the usage analytics page its place and permission in the
    admin. Its figures come from ``analytics.queries``."""

    class Meta:
        proxy = True
        verbose_name = "usage analytics"
        verbose_name_plural = "usage analytics"
