from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.models import ApiKey, Scope


class Command(BaseCommand):
    help = "Create, list or revoke API keys. A new key's secret is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="create a key and print its secret")
        create.add_argument("name")
        create.add_argument(
            "--scopes",
            default="ingest",
            help=f"comma-separated, from: {', '.join(Scope.values)} (default: ingest)",
        )
        create.add_argument(
            "--quiet", action="store_true", help="print only the secret (for scripts)"
        )
        actions.add_parser("list", help="list keys (never their secrets)")
        revoke = actions.add_parser("revoke", help="revoke a key by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        unknown = sorted(set(scopes) - set(Scope.values))
        if unknown or not scopes:
            raise CommandError(
                f"Unknown or missing scopes {unknown}; choose from {', '.join(Scope.values)}."
            )
        key = ApiKey(name=options["name"], scopes=scopes)
        raw_key = key.set_new_secret()
        key.save()
        if options["quiet"]:
            self.stdout.write(raw_key)
            return
        self.stdout.write(f"Created API key '{key.name}' with scopes {', '.join(scopes)}:")
        self.stdout.write(raw_key)
        self.stdout.write("Copy it now: it is stored hashed and will not be shown again.")

    def _list(self, options: dict[str, Any]) -> None:
        for key in ApiKey.objects.all():
            state = "revoked" if key.revoked_at else "active"
            used = key.last_used_at.isoformat() if key.last_used_at else "never"
            self.stdout.write(
                f"{key.prefix}  {state:7}  {','.join(key.scopes):20}  last used {used}  {key.name}"
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        updated = ApiKey.objects.filter(prefix=options["prefix"], revoked_at=None).update(
            revoked_at=timezone.now()
        )
        if not updated:
            raise CommandError(f"No active API key with prefix '{options['prefix']}'.")
        self.stdout.write(f"Revoked API key {options['prefix']}.")
