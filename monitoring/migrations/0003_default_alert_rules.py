"""The seed's two default rules: error rate above 10% over 10 minutes (high), and average node
latency above 5 s over 15 minutes (medium), the latter for each node so every slow node
alerts."""

from datetime import timedelta
from typing import Any

from django.db import migrations

DEFAULTS = [
    {
        "name": "High error rate",
        "description": "More than 10% of graph runs failed over the last 10 minutes.",
        "metric": "error_rate",
        "scope": "all",
        "window": timedelta(minutes=10),
        "comparison": "gt",
        "threshold": 0.10,
        "severity": "high",
        "min_samples": 10,
    },
    {
        "name": "Slow node",
        "description": "A node's average latency was above 5 s over the last 15 minutes.",
        "metric": "latency_avg",
        "scope": "each_node",
        "window": timedelta(minutes=15),
        "comparison": "gt",
        "threshold": 5000.0,
        "severity": "medium",
        "min_samples": 1,
    },
]


def create_defaults(apps: Any, schema_editor: Any) -> None:
    AlertRule = apps.get_model("monitoring", "AlertRule")
    for rule in DEFAULTS:
        AlertRule.objects.get_or_create(name=rule["name"], defaults=rule)


def remove_defaults(apps: Any, schema_editor: Any) -> None:
    AlertRule = apps.get_model("monitoring", "AlertRule")
    AlertRule.objects.filter(name__in=[rule["name"] for rule in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0002_alerting")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
