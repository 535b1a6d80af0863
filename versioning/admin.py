from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from monitoring.models import HourRollup, RunStatus

from . import services
from .models import Graph, GraphVersion, VersionEvent

ACTIVATE_PERMISSION = "versioning.activate_graphversion"
"""Activating and rolling back change what a graph runs: a permission of its own."""

ROLLBACK_TEMPLATE = "admin/versioning/graphversion/rollback.html"


def _runs_last_24h(status: str | None = None) -> Coalesce:
    """Graph runs of the last 24 whole hours, summed from the hour rollups."""
    rows = HourRollup.objects.filter(
        graph=OuterRef("pk"), node="", bucket_start__gte=timezone.now() - timedelta(hours=24)
    )
    if status is not None:
        rows = rows.filter(status=status)
    total = rows.values("graph").annotate(total=Sum("count")).values("total")
    return Coalesce(Subquery(total, output_field=IntegerField()), 0)


def _actor(request: HttpRequest) -> str:
    """Who acted, as the version history records it: the signed-in user's username."""
    return request.user.get_username()


def _version_url(version_id: int) -> str:
    return reverse("admin:versioning_graphversion_change", args=[version_id])


def _version_link(version: GraphVersion | None) -> SafeString | str:
    if version is None:
        return "none"
    return format_html('<a href="{}">v{}</a>', _version_url(version.pk), version.number)


class ReadOnlyMixin:
    """Rows written by ``versioning.services`` only: shown, never added, edited or deleted."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Rendering a definition and a diff -----------------------------------------------------------

_ADDED_STYLE = "color: #1a7f37"
_REMOVED_STYLE = "color: #cf222e"


def _json(value: Any, *, indent: int | None = None) -> str:
    separators = None if indent else (", ", ": ")
    return json.dumps(value, indent=indent, separators=separators, ensure_ascii=False, default=str)


def definition_html(definition: Any) -> SafeString:
    """The definition as indented JSON (escaped), in a scrolling box."""
    return format_html(
        '<pre class="graph-definition" style="max-height: 40em; overflow: auto;">{}</pre>',
        _json(definition, indent=2),
    )


def _item_html(section: str, item: Any) -> SafeString:
    """One added or removed item: a node by its name, an edge as ``a → b``, else its JSON."""
    if isinstance(item, dict):
        if section == "branches" and "source" in item:
            name = f"{item.get('source')}:{item.get('name')}"
            rest = {k: v for k, v in item.items() if k not in ("source", "name")}
        elif "name" in item:
            name = str(item["name"])
            rest = {k: v for k, v in item.items() if k != "name"}
        else:
            return format_html("<code>{}</code>", _json(item))
        if not rest:
            return format_html("<strong>{}</strong>", name)
        return format_html("<strong>{}</strong> <code>{}</code>", name, _json(rest))
    if (
        isinstance(item, list)
        and len(item) >= 2
        and all(isinstance(part, str | int | float) for part in item)
    ):
        return format_html("<code>{}</code>", " → ".join(str(part) for part in item))
    return format_html("<code>{}</code>", _json(item))


def _before_after_html(label: SafeString | str, before: Any, after: Any) -> SafeString:
    return format_html(
        '<li>{}: <del style="{}">{}</del> → <ins style="{}">{}</ins></li>',
        label,
        _REMOVED_STYLE,
        _json(before),
        _ADDED_STYLE,
        _json(after),
    )


def _joined(parts: list[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


def _section_html(section: str, body: Any) -> SafeString:
    if not isinstance(body, dict):
        return format_html("<li><code>{}</code></li>", _json(body))
    items: list[SafeString] = []
    if section == "config":
        for key, change in body.items():
            change = change if isinstance(change, dict) else {}
            items.append(
                _before_after_html(
                    format_html("<strong>{}</strong>", key),
                    change.get("before"),
                    change.get("after"),
                )
            )
        return _joined(items)
    for item in body.get("added") or []:
        items.append(
            format_html(
                '<li class="diff-added" style="{}">+ {}</li>',
                _ADDED_STYLE,
                _item_html(section, item),
            )
        )
    for item in body.get("removed") or []:
        items.append(
            format_html(
                '<li class="diff-removed" style="{}">− {}</li>',
                _REMOVED_STYLE,
                _item_html(section, item),
            )
        )
    for name, fields in (body.get("changed") or {}).items():
        rows = []
        for field, change in (fields if isinstance(fields, dict) else {}).items():
            change = change if isinstance(change, dict) else {"after": change}
            rows.append(_before_after_html(field, change.get("before"), change.get("after")))
        items.append(
            format_html(
                '<li class="diff-changed">~ <strong>{}</strong><ul>{}</ul></li>',
                name,
                _joined(rows),
            )
        )
    if not items:
        items.append(
            format_html(
                "<li>{}</li>",
                "Changed, with no item added, removed or edited (order, duplicates or values "
                "that are not objects differ).",
            )
        )
    return _joined(items)


def diff_html(changes: dict[str, Any]) -> SafeString:
    """``services.diff``'s result as nested lists: added in green, removed in red, changed
    fields as before → after. Every value is escaped."""
    if not changes:
        return format_html("<p>{}</p>", "No changes.")
    return format_html(
        '<div class="version-diff">{}</div>',
        format_html_join(
            "",
            '<h4 style="margin: 0.5em 0 0.2em">{}</h4><ul>{}</ul>',
            ((section, _section_html(section, body)) for section, body in changes.items()),
        ),
    )


# --- Graph versions ------------------------------------------------------------------------------


class GraphVersionAddForm(forms.ModelForm[GraphVersion]):
    """Register a version by pasting its definition; ``services.register`` does the rest (an
    identical definition answers the version that holds it already)."""

    graph_name = forms.CharField(label="Graph", max_length=200, help_text="The graph's name.")
    definition_json = forms.JSONField(
        label="Definition",
        widget=forms.Textarea(attrs={"rows": 20, "cols": 100}),
        help_text="The graph's definition as JSON (the SDK's graph_definition).",
    )

    class Meta:
        model = GraphVersion
        fields = ["description", "source"]

    def clean_definition_json(self) -> dict[str, Any]:
        value = self.cleaned_data["definition_json"]
        if not isinstance(value, dict):
            raise forms.ValidationError("A definition is a JSON object.")
        if not value:
            raise forms.ValidationError("A definition cannot be empty.")
        if not isinstance(value.get("nodes", []), list):
            raise forms.ValidationError("'nodes' must be a list.")
        if len(json.dumps(value)) > 1_000_000:
            raise forms.ValidationError("A definition is limited to 1 MB of JSON.")
        return value


class RollbackForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Why roll back: kept in the graph's version history.",
    )


_VERSION_FIELDS = [
    "graph",
    "number",
    "content_hash",
    "description",
    "source",
    "created_by",
    "created_at",
    "is_active",
]


@admin.register(GraphVersion)
class GraphVersionAdmin(admin.ModelAdmin[GraphVersion]):
    """Versions are immutable: registered through the API, the SDK or the add form here,
    activated and rolled back by the actions (``versioning.activate_graphversion``)."""

    list_display = [
        "__str__",
        "graph",
        "number",
        "short_hash",
        "short_description",
        "source",
        "created_by",
        "created_at",
        "is_active",
    ]
    list_display_links = ["__str__"]
    list_filter = ["graph", "is_active"]
    list_select_related = ["graph"]
    search_fields = ["graph__name", "description", "source", "created_by", "^content_hash"]
    date_hierarchy = "created_at"
    actions = ["activate", "rollback"]

    # The page of one version ----------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: GraphVersion | None = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["graph_name", "definition_json", "description", "source"]})]
        return [
            (None, {"fields": _VERSION_FIELDS}),
            ("Changes", {"fields": ["changes"]}),
            ("Definition", {"fields": ["definition_pretty"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: GraphVersion | None = None) -> Any:
        if obj is None:
            return []
        return [*_VERSION_FIELDS, "changes", "definition_pretty"]

    def get_form(
        self,
        request: HttpRequest,
        obj: GraphVersion | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is None:
            kwargs["form"] = GraphVersionAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> GraphVersion | None:
        version = super().get_object(request, object_id, from_field)
        if version is not None:
            # The version to diff against (``?against=<number>``), for ``changes`` below:
            # kept on this request's own instance, not on the shared admin.
            version._diff_against = request.GET.get("against", "")  # type: ignore[attr-defined]
        return version

    @admin.display(description="definition")
    def definition_pretty(self, version: GraphVersion) -> SafeString:
        return definition_html(version.definition)

    @admin.display(description="changes")
    def changes(self, version: GraphVersion) -> SafeString:
        """The diff against the previous version, or the one ``?against=`` names."""
        if version.pk is None:
            return SafeString("")
        numbers = list(
            GraphVersion.objects.filter(graph_id=version.graph_id)
            .order_by("number")
            .values_list("number", flat=True)
        )
        raw = str(getattr(version, "_diff_against", "") or "")
        note: SafeString | str = ""
        earlier = [n for n in numbers if n < version.number]
        against: int | None = earlier[-1] if earlier else None
        if raw:
            if raw.isdigit() and int(raw) in numbers and int(raw) != version.number:
                against = int(raw)
            else:
                note = format_html(
                    "<p>{}</p>", f"{version.graph} has no other version {raw!r} to compare with."
                )
        others = [n for n in numbers if n != version.number]
        links = format_html_join(
            " · ",
            '<a href="?against={}">v{}</a>',
            ((n, n) for n in others),
        )
        compare = format_html("<p>Compare with: {}</p>", links) if others else ""
        if against is None:
            body = format_html("<p>{}</p>", "The first version: nothing before it to compare.")
            return format_html("{}{}{}", note, body, compare)
        other = GraphVersion.objects.get(graph_id=version.graph_id, number=against)
        heading = format_html(
            "<p>From <strong>v{}</strong> to <strong>v{}</strong> (this version):</p>",
            other.number,
            version.number,
        )
        changes = diff_html(services.diff(other.definition, version.definition))
        return format_html("{}{}{}{}", note, heading, changes, compare)

    # The list ----------------------------------------------------------------------------------

    @admin.display(description="hash", ordering="content_hash")
    def short_hash(self, version: GraphVersion) -> SafeString:
        return format_html(
            '<code title="{}">{}</code>', version.content_hash, version.content_hash[:12]
        )

    @admin.display(description="description", ordering="description")
    def short_description(self, version: GraphVersion) -> str:
        return Truncator(version.description).chars(80)

    # Permissions -------------------------------------------------------------------------------

    def has_change_permission(self, request: HttpRequest, obj: GraphVersion | None = None) -> bool:
        return False  # immutable; the page shows the version read-only

    def has_delete_permission(self, request: HttpRequest, obj: GraphVersion | None = None) -> bool:
        return False  # events point at versions: history is never rewritten

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(ACTIVATE_PERMISSION)

    # Registering from the add form ---------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: GraphVersion, form: Any, change: bool) -> None:
        if change:  # never reached: versions have no change permission
            raise PermissionError("A graph version is never edited.")
        data = form.cleaned_data
        registered = services.register(
            data["graph_name"],
            data["definition_json"],
            description=data.get("description", ""),
            source=data.get("source", ""),
            created_by=_actor(request),
        )
        version = registered.version
        # The admin goes on with ``obj`` (log entry, message, redirect): make it the version.
        for field in GraphVersion._meta.concrete_fields:
            setattr(obj, field.attname, getattr(version, field.attname))
        obj.graph = version.graph
        obj._state.adding = False
        obj._state.db = version._state.db
        obj._registered_before = not registered.created  # type: ignore[attr-defined]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # no related objects; form.save_m2m would have nothing to save

    def log_addition(self, request: HttpRequest, obj: GraphVersion, message: Any) -> Any:
        if getattr(obj, "_registered_before", False):
            return None
        return super().log_addition(request, obj, message)

    def response_add(
        self, request: HttpRequest, obj: GraphVersion, post_url_continue: str | None = None
    ) -> HttpResponse:
        if getattr(obj, "_registered_before", False):
            self.message_user(
                request,
                f"That definition is registered already, as {obj}: nothing was added.",
                messages.WARNING,
            )
            return HttpResponseRedirect(_version_url(obj.pk))
        return super().response_add(request, obj, post_url_continue)

    # Actions ------------------------------------------------------------------------------------

    @admin.action(description="Activate the selected version", permissions=["activate"])
    def activate(self, request: HttpRequest, queryset: QuerySet[GraphVersion]) -> None:
        version = self._only_one(request, queryset, "activate")
        if version is None:
            return
        try:
            event = services.activate(version, actor=_actor(request))
        except services.VersionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, self._done(event), messages.SUCCESS)

    @admin.action(description="Roll back to the selected version", permissions=["activate"])
    def rollback(
        self, request: HttpRequest, queryset: QuerySet[GraphVersion]
    ) -> TemplateResponse | None:
        """First an intermediate page asking for the reason; its form posts back here with
        ``post=yes``."""
        version = self._only_one(request, queryset, "roll back to")
        if version is None:
            return None
        active = GraphVersion.objects.active().filter(graph_id=version.graph_id).first()
        if active is None or version.number >= active.number:
            # services.rollback would refuse it too; say so before asking for a reason.
            shown = f"v{active.number}" if active else "none"
            self.message_user(
                request,
                f"{version}: roll back to an earlier version than the active one ({shown}); "
                "to move forward, activate.",
                messages.ERROR,
            )
            return None
        form = RollbackForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_bound and form.is_valid():
            try:
                event = services.rollback(
                    version, actor=_actor(request), reason=form.cleaned_data["reason"]
                )
            except services.VersionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return None
            self.message_user(request, self._done(event), messages.SUCCESS)
            return None
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": f"Roll back {version.graph} to v{version.number}",
            "opts": self.opts,
            "version": version,
            "active": active,
            "form": form,
            "changes": diff_html(services.diff(active.definition, version.definition)),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "rollback",
            "media": self.media,
        }
        return TemplateResponse(request, ROLLBACK_TEMPLATE, context)

    def _only_one(
        self, request: HttpRequest, queryset: QuerySet[GraphVersion], verb: str
    ) -> GraphVersion | None:
        versions = list(queryset.select_related("graph")[:2])
        if len(versions) != 1:
            self.message_user(request, f"Select exactly one version to {verb}.", messages.ERROR)
            return None
        return versions[0]

    @staticmethod
    def _done(event: VersionEvent) -> str:
        before = f"v{event.from_version.number}" if event.from_version else "none"
        return (
            f"{event.graph}: v{event.to_version.number} is now active (was {before}); "
            f"{event.get_action_display().lower()} recorded."
        )


# --- Graphs --------------------------------------------------------------------------------------


class GraphVersionInline(ReadOnlyMixin, admin.TabularInline[GraphVersion, Graph]):
    model = GraphVersion
    fields = ("version", "hash", "description", "created_at", "is_active")
    readonly_fields = fields
    ordering = ["-number"]
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "versions (newest first)"

    @admin.display(description="version")
    def version(self, version: GraphVersion) -> SafeString | str:
        return _version_link(version)

    @admin.display(description="hash")
    def hash(self, version: GraphVersion) -> SafeString:
        return format_html("<code>{}</code>", version.content_hash[:12])


class VersionEventInline(ReadOnlyMixin, admin.TabularInline[VersionEvent, Graph]):
    model = VersionEvent
    fk_name = "graph"
    fields = ("created_at", "action", "transition", "reason", "actor")
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    can_delete = False
    verbose_name_plural = "history (newest first)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[VersionEvent]:
        return super().get_queryset(request).select_related("from_version", "to_version")

    @admin.display(description="from → to")
    def transition(self, event: VersionEvent) -> SafeString:
        return format_html(
            "{} → {}", _version_link(event.from_version), _version_link(event.to_version)
        )


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin[Graph]):
    list_display = ["name", "active_version", "runs_24h", "error_rate_24h", "created_at"]
    search_fields = ["name", "description"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]
    inlines = [GraphVersionInline, VersionEventInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Graph]:
        active = GraphVersion.objects.filter(graph=OuterRef("pk"), is_active=True)
        return (
            super()
            .get_queryset(request)
            .annotate(
                runs_24h=_runs_last_24h(),
                errors_24h=_runs_last_24h(RunStatus.ERROR),
                active_version_id=Subquery(active.values("id")[:1]),
                active_version_number=Subquery(active.values("number")[:1]),
            )
        )

    @admin.display(description="active version", ordering="active_version_number")
    def active_version(self, obj: Graph) -> SafeString | str:
        version_id = getattr(obj, "active_version_id", None)
        if version_id is None:
            return "-"
        return format_html(
            '<a href="{}">v{}</a>',
            _version_url(version_id),
            obj.active_version_number,  # type: ignore[attr-defined]
        )

    @admin.display(description="runs (24 h)", ordering="runs_24h")
    def runs_24h(self, obj: Graph) -> int:
        return int(getattr(obj, "runs_24h", 0))

    @admin.display(description="error rate (24 h)")
    def error_rate_24h(self, obj: Graph) -> str:
        runs = int(getattr(obj, "runs_24h", 0))
        errors = int(getattr(obj, "errors_24h", 0))
        return f"{100 * errors / runs:.1f}%" if runs else "-"


# --- Version history -----------------------------------------------------------------------------


@admin.register(VersionEvent)
class VersionEventAdmin(ReadOnlyMixin, admin.ModelAdmin[VersionEvent]):
    """Append-only: every activation and rollback, as ``versioning.services`` recorded it."""

    list_display = ["created_at", "graph", "action", "transition", "reason_text", "actor"]
    list_filter = ["action", "graph"]
    list_select_related = ["graph", "from_version", "to_version"]
    search_fields = ["graph__name", "reason", "actor"]
    date_hierarchy = "created_at"
    fields = ["created_at", "graph", "action", "from_version", "to_version", "reason", "actor"]

    @admin.display(description="from → to")
    def transition(self, event: VersionEvent) -> SafeString:
        return format_html(
            "{} → {}", _version_link(event.from_version), _version_link(event.to_version)
        )

    @admin.display(description="reason", ordering="reason")
    def reason_text(self, event: VersionEvent) -> str:
        return Truncator(event.reason).chars(100)
