"""The viewer, operator and admin groups (see monitoring/roles.py)."""

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
LGMON_APPS = ("monitoring", "versioning", "analytics")
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


def create_roles(apps: Any, schema_editor: Any) -> None:
    # Permissions are normally made after all migrations ran; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(content_type__app_label__in=LGMON_APPS)
    views = list(ours.filter(codename__startswith="view_"))
    operating = []
    for name in OPERATOR_PERMISSIONS:
        app_label, codename = name.split(".")
        operating.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    everything = list(ours) + list(Permission.objects.filter(content_type__app_label="auth"))
    for name, permissions in (
        (VIEWER, views),
        (OPERATOR, views + operating),
        (ADMIN, everything),
    ):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*permissions)


def remove_roles(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=[VIEWER, OPERATOR, ADMIN]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_default_alert_rules"),
        ("versioning", "0004_experiment_sequential"),
        ("analytics", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
