"""API key authentication (``Authorization: Bearer lgm_...``) and scope permissions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from .models import ApiKey, Scope
from .roles import READ_PERMISSION

if TYPE_CHECKING:
    from rest_framework.views import APIView


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates requests that carry an API key; ``request.auth`` is the ``ApiKey``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <key>'.")
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid API key.") from exc
        api_key = ApiKey.objects.for_raw_key(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_key.touch(timezone.now())
        return AnonymousUser(), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class _ScopePermission(permissions.BasePermission):
    """Allows an API key with the scope, or a signed-in staff user whose role grants the
    Django permission standing for it (``staff_permission``; see ``monitoring.roles``)."""

    scope: str

    def has_permission(self, request: Request, view: APIView) -> bool:
        if isinstance(request.auth, ApiKey):
            if request.auth.has_scope(self.scope):
                return True
            self.message = f"This API key lacks the '{self.scope}' scope."
            return False
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            return False
        needed = self.staff_permission(request, view)
        if needed is None or not user.has_perm(needed):
            self.message = "Your role does not allow this."
            return False
        return True

    def staff_permission(self, request: Request, view: APIView) -> str | None:
        raise NotImplementedError


class IngestScope(_ScopePermission):
    scope = Scope.INGEST

    def staff_permission(self, request: Request, view: APIView) -> str | None:
        return "monitoring.add_graphrun"


class ReadScope(_ScopePermission):
    scope = Scope.READ

    def staff_permission(self, request: Request, view: APIView) -> str | None:
        return READ_PERMISSION


class ManageScope(_ScopePermission):
    """For a signed-in person, the permission the view names for the action
    (``manage_permissions``, by action or HTTP method); none named means superusers only."""

    scope = Scope.MANAGE

    def staff_permission(self, request: Request, view: APIView) -> str | None:
        table: dict[str, str] = getattr(view, "manage_permissions", {})
        action = getattr(view, "action", None) or (request.method or "").lower()
        return table.get(action)


def actor(request: Request) -> str:
    """Who acted, as alerts and version history record it: ``key:<name>`` for an API key,
    else the signed-in user's username."""
    if isinstance(request.auth, ApiKey):
        return f"key:{request.auth.name}"
    return str(request.user.get_username()) if request.user is not None else ""
