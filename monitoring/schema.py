"""OpenAPI (drf-spectacular) extensions; imported by ``MonitoringConfig.ready``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Declares ``ApiKeyAuthentication`` as an HTTP bearer scheme (``Bearer lgm_...``)."""

    target_class = "monitoring.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme: dict[str, Any] = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer", bearer_format="lgm_..."
        )
        scheme["description"] = (
            "An lgmon API key (created in the admin) with the scope the endpoint needs: "
            "ingest, read or manage."
        )
        return scheme


class FieldErrorsScheme(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """DRF's validation errors: an object of message lists, keyed by field."""

    target_class = "monitoring.openapi.FieldErrorsSerializer"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "description": "Messages per field (``non_field_errors`` for the whole input).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
            "example": {"window": ["Use a number and a unit (s, m, h, d, w), e.g. 10m, 24h, 7d."]},
        }
