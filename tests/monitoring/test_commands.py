from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from monitoring.models import ApiKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_creates_a_key_and_prints_its_secret_once() -> None:
    secret = run("apikey", "create", "ci", "--scopes", "ingest,read", "--quiet").strip()
    key = ApiKey.objects.get(name="ci")
    assert ApiKey.objects.for_raw_key(secret) == key
    assert key.scopes == ["ingest", "read"]
    listing = run("apikey", "list")
    assert key.prefix in listing
    assert secret not in listing


def test_it_refuses_unknown_scopes() -> None:
    with pytest.raises(CommandError, match="Unknown or missing scopes"):
        run("apikey", "create", "ci", "--scopes", "ingest,root")
    assert not ApiKey.objects.exists()


def test_it_revokes_a_key_by_prefix() -> None:
    secret = run("apikey", "create", "ci", "--quiet").strip()
    key = ApiKey.objects.get()
    assert "Revoked" in run("apikey", "revoke", key.prefix)
    assert ApiKey.objects.for_raw_key(secret) is None
    with pytest.raises(CommandError, match="No active API key"):
        run("apikey", "revoke", key.prefix)


def test_it_creates_an_admin_with_a_generated_password_once(monkeypatch: Any) -> None:
    monkeypatch.delenv("LGMON_ADMIN_PASSWORD", raising=False)
    output = run("ensure_admin")
    password = output.split("Its password is: ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert run("ensure_admin").strip() == "An admin account exists already."
    assert get_user_model().objects.count() == 1


def test_it_creates_the_admin_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("LGMON_ADMIN_USERNAME", "root")
    monkeypatch.setenv("LGMON_ADMIN_PASSWORD", "s3cret-pass")
    output = run("ensure_admin")
    assert "s3cret-pass" not in output
    assert get_user_model().objects.get(username="root").check_password("s3cret-pass")
