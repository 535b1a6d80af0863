"""``?format=csv`` for table-like API responses (the analytics endpoints), and a base view
whose errors stay JSON when CSV was asked for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from . import csv_export


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as ``outer.inner`` columns."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def table(data: Any, columns: tuple[str, ...] = ()) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of a response: a list of objects, the list under ``results``, or
    a single object as one row. ``columns`` come first (and make the header of an empty
    list); keys found beyond them follow in the order met."""
    if isinstance(data, Mapping) and isinstance(data.get("results"), list):
        records = data["results"]
    elif isinstance(data, list):
        records = data
    else:
        records = [data]
    flat = [
        _flat(record) if isinstance(record, Mapping) else {"value": record} for record in records
    ]
    header = list(dict.fromkeys([*columns, *(key for record in flat for key in record)]))
    return header, [[record.get(name) for name in header] for record in flat]


class CSVRenderer(BaseRenderer):
    """A table as CSV with a header row (``table``), cells formatted and guarded against
    formula injection as in ``monitoring.csv_export``. The view may name its columns
    (``csv_columns``) and the download (``csv_name``: ``lgmon-<csv_name>-<date>.csv``)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        context = renderer_context or {}
        view = context.get("view")
        header, rows = table(data, tuple(getattr(view, "csv_columns", ())))
        response = context.get("response")
        if response is not None and response.status_code < 400:
            response["Content-Disposition"] = csv_export.attachment(
                getattr(view, "csv_name", "export")
            )
        if not header:  # an empty list, with no columns named
            return b""
        return "".join(csv_export.lines(header, rows)).encode(self.charset)


class CSVTableView(APIView):
    """An API view that also answers ``?format=csv`` (or ``Accept: text/csv``); JSON stays
    the default, and errors are JSON whatever was asked for."""

    renderer_classes = [
        *cast(list[type[BaseRenderer]], api_settings.DEFAULT_RENDERER_CLASSES),
        CSVRenderer,
    ]
    csv_name = "export"
    csv_columns: tuple[str, ...] = ()

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if (
            isinstance(response, Response)
            and response.status_code >= 400
            and isinstance(getattr(response, "accepted_renderer", None), CSVRenderer)
        ):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response
