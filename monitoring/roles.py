"""The three roles, as Django groups (created by a data migration; assign people in the admin
under Authentication and Authorization → Groups, and mark them staff):

- **viewer**: reads every dashboard, list and API endpoint (read scope), changes nothing;
- **operator**: a viewer who also acknowledges, resolves and silences alerts, manages
  silences, registers, activates and rolls back graph versions, and runs experiments;
- **admin**: everything in lgmon, plus users and groups (rules, channels, API keys).

API keys carry scopes instead; a signed-in person using the API (the browsable API, the
docs page, the dashboards) needs the permission of the role, see ``monitoring.auth``.
"""

from __future__ import annotations

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
LGMON_APPS = ("monitoring", "versioning", "analytics")

READ_PERMISSION = "monitoring.view_graphrun"
"""What a signed-in person needs for the read scope (every role has it)."""

OPERATOR_PERMISSIONS = (
    "monitoring.change_alert",
    "monitoring.add_silence",
    "monitoring.change_silence",
    "monitoring.delete_silence",
    "versioning.add_graphversion",
    "versioning.activate_graphversion",
    "versioning.add_experiment",
    "versioning.change_experiment",
    "versioning.delete_experiment",
    "versioning.add_variant",
    "versioning.change_variant",
    "versioning.delete_variant",
)
ADMIN_EXTRA_APPS = ("auth",)
