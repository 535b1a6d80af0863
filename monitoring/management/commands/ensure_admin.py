from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create a superuser if none exists. Username, email and password come from "
        "LGMON_ADMIN_USERNAME, LGMON_ADMIN_EMAIL and LGMON_ADMIN_PASSWORD; without a password "
        "one is generated and printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists already.")
            return
        username = os.environ.get("LGMON_ADMIN_USERNAME", "admin")
        email = os.environ.get("LGMON_ADMIN_EMAIL", "admin@localhost")
        password = os.environ.get("LGMON_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Created admin account '{username}'."))
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Its password is: {password}\nIt is shown only this once; change it in "
                    "the admin, or set LGMON_ADMIN_PASSWORD before the first run."
                )
            )
