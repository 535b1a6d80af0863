from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.validators import validate_slug
from django.db.models import IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from monitoring.models import HourRollup, RunStatus

from . import experiments, result_charts, services
from .models import Experiment, Graph, GraphVersion, Variant, VersionEvent
from .results import METRICS
from .results import compute as compute_results

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
    list_display = [
        "name",
        "active_version",
        "runs_24h",
        "error_rate_24h",
        "created_at",
        "dashboard_link",
    ]
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

    @admin.display(description="dashboard")
    def dashboard_link(self, obj: Graph) -> SafeString:
        url = reverse("dashboards:graph", args=[obj.name])
        return format_html('<a href="{}" class="graph-dashboard-link">charts</a>', url)


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


# --- Experiments ---------------------------------------------------------------------------------

RESULTS_TEMPLATE = "admin/versioning/experiment/results.html"
DASH = "–"
"""What a figure that does not exist (yet) shows as."""

WEIGHT_TOLERANCE = 0.01

_METRIC_LABELS = {
    "success_rate": "Success rate",
    "error_rate": "Error rate",
    "latency_mean_ms": "Latency mean (ms)",
    "latency_p95_ms": "Latency p95 (ms)",
}


def _results_url(experiment_id: int) -> str:
    return reverse("admin:versioning_experiment_results", args=[experiment_id])


def _share(weight: float) -> str:
    return f"{100 * weight:.4g}%"


class ExperimentForm(forms.ModelForm[Experiment]):
    class Meta:
        model = Experiment
        fields = ["graph", "key", "hypothesis", "coverage", "min_units", "guardrails"]

    def clean_coverage(self) -> float:
        coverage = float(self.cleaned_data["coverage"])
        if not 0.0 <= coverage <= 1.0:
            raise forms.ValidationError("A share between 0 and 1 (1 = every unit).")
        return coverage

    def clean_min_units(self) -> int:
        min_units = int(self.cleaned_data["min_units"])
        if min_units < 1:
            raise forms.ValidationError("At least 1 unit per variant.")
        return min_units


class VariantForm(forms.ModelForm[Variant]):
    class Meta:
        model = Variant
        fields = ["name", "version", "weight"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "name" in self.fields:
            # Runs report ``<experiment key>:<variant name>``: a slug, as the API asks.
            self.fields["name"].validators.append(validate_slug)
            self.fields["name"].help_text = "Letters, digits, - and _."

    def clean_weight(self) -> float:
        weight = float(self.cleaned_data["weight"])
        if not 0.0 < weight <= 1.0:
            raise forms.ValidationError("A share above 0 and at most 1.")
        return weight


class VariantFormSet(forms.BaseInlineFormSet[Variant, Experiment, forms.ModelForm[Variant]]):
    """An experiment's variants, checked together: two at least, weights adding up to 1 and
    every version one of the experiment's graph. The first row is the control."""

    def add_fields(self, form: forms.ModelForm[Variant], index: int | None) -> None:
        super().add_fields(form, index)
        version = form.fields.get("version")
        if isinstance(version, forms.ModelChoiceField):
            versions = GraphVersion.objects.select_related("graph").order_by("graph", "number")
            if self.instance.pk is not None and self.instance.graph_id is not None:
                # A saved experiment's graph is fixed: offer its versions only.
                versions = versions.filter(graph_id=self.instance.graph_id)
            version.queryset = versions

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        live = [
            form
            for form in self.forms
            if form.cleaned_data and not (self.can_delete and form.cleaned_data.get("DELETE"))
        ]
        graph_id = self.instance.graph_id
        for form in live:
            version: GraphVersion = form.cleaned_data["version"]
            if graph_id is not None and version.graph_id != graph_id:
                form.add_error(
                    "version",
                    f"{version} is a version of {version.graph}, not of {self.instance.graph}.",
                )
        if len(live) < 2:
            raise forms.ValidationError(
                "An experiment needs at least two variants: the first is the control."
            )
        total = sum(float(form.cleaned_data["weight"]) for form in live)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise forms.ValidationError(
                f"The weights must add up to 1 (±{WEIGHT_TOLERANCE}); they add up to {total:.4g}."
            )


def _is_draft(experiment: Experiment | None) -> bool:
    return experiment is None or experiment.status == Experiment.Status.DRAFT


class VariantInline(admin.TabularInline[Variant, Experiment]):
    """Editable while the experiment is a draft; read-only once it has started, so the weights
    units were assigned by stay what the results say they were. Permissions are the
    experiment's: variants are part of it."""

    model = Variant
    form = VariantForm
    formset = VariantFormSet
    fields = ("role", "name", "version", "weight")
    readonly_fields = ("role",)
    ordering = ["position"]
    verbose_name_plural = "variants (the first is the control)"

    def get_extra(self, request: HttpRequest, obj: Experiment | None = None, **kwargs: Any) -> int:
        return 2 if obj is None else 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Variant]:
        return super().get_queryset(request).select_related("version__graph")

    @admin.display(description="role")
    def role(self, variant: Variant) -> str:
        if variant.pk is None:
            return ""
        return "control" if variant.position == 0 else "treatment"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        opts = Experiment._meta
        return request.user.has_perm(
            f"{opts.app_label}.view_{opts.model_name}"
        ) or self._may_change(request, None)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_change(request, obj)

    @staticmethod
    def _may_change(request: HttpRequest, experiment: Experiment | None) -> bool:
        opts = Experiment._meta
        return _is_draft(experiment) and request.user.has_perm(
            f"{opts.app_label}.change_{opts.model_name}"
        )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _figure(value: float | None, pattern: str, scale: float = 1.0) -> str:
    """``value`` times ``scale`` in ``pattern``; a dash when there is no figure (None, or an
    infinite bound)."""
    if value is None or _missing(value):
        return DASH
    return pattern.format(scale * value)


def _percent(value: float | None) -> str:
    return _figure(value, "{:.1f}%", 100)


def _ms(value: float | None) -> str:
    return _figure(value, "{:,.1f}")


def _p_value(value: float | None) -> str:
    if value is not None and value < 0.0001:
        return "< 0.0001"
    return _figure(value, "{:.4f}")


def _signed(value: float | None, *, rate: bool) -> str:
    """A difference: percentage points for a rate, milliseconds for a latency."""
    return _figure(value, "{:+.2f} pp", 100) if rate else _figure(value, "{:+,.1f} ms")


def _lift(value: float | None) -> str:
    return _figure(value, "{:+.1f}%", 100)


def _interval(bounds: Any, show: Callable[[float | None], str]) -> str:
    """``[low, high]``, or a dash when the interval is unknown or unbounded."""
    if not isinstance(bounds, list | tuple) or len(bounds) != 2 or any(map(_missing, bounds)):
        return DASH
    return f"[{show(bounds[0])}, {show(bounds[1])}]"


def _verdict(verdict: str, units: int, min_units: int) -> tuple[str, str]:
    """The verdict as shown, and its CSS class."""
    if verdict == "collecting":
        return f"collecting data ({units}/{min_units})", "verdict-collecting"
    if verdict in ("better", "worse"):
        return verdict.upper(), f"verdict-{verdict}"
    return verdict, f"verdict-{verdict}"


def results_context(experiment: Experiment, document: dict[str, Any]) -> dict[str, Any]:
    """The results document as rows of display strings, for the template to escape."""
    units = {row["name"]: int(row["units"]) for row in document["variants"]}
    variants = []
    for row in document["variants"]:
        latency = row.get("latency_ms") or {}
        variants.append(
            {
                "name": row["name"],
                "version": row["version"],
                "weight": _share(float(row["weight"])),
                "assigned_units": row["assigned_units"],
                "units": row["units"],
                "runs": row["runs"],
                "success_rate": _percent(row["success_rate"]),
                "error_rate": _percent(row["error_rate"]),
                "latency_mean": _ms(latency.get("mean")),
                "latency_p50": _ms(latency.get("p50")),
                "latency_p95": _ms(latency.get("p95")),
            }
        )
    comparisons = []
    for comparison in document["comparisons"]:
        smaller = min(units.get(comparison["against"], 0), units.get(comparison["variant"], 0))
        metrics = []
        for name, (_, guardrail) in METRICS.items():
            figures = comparison[name]
            rate = name.endswith("_rate")
            mean = _percent if rate else _ms
            verdict, verdict_class = _verdict(
                str(figures["verdict"]), smaller, experiment.min_units
            )
            metrics.append(
                {
                    "name": name,
                    "label": _METRIC_LABELS.get(name, name),
                    "control": mean(figures["control_mean"]),
                    "treatment": mean(figures["treatment_mean"]),
                    "difference": _signed(figures["difference"], rate=rate),
                    "difference_ci": _interval(
                        figures["difference_ci"], partial(_signed, rate=rate)
                    ),
                    "relative_lift": _lift(figures["relative_lift"]),
                    "relative_lift_ci": _interval(figures["relative_lift_ci"], _lift),
                    "p_value": _p_value(figures["p_value"]),
                    "sequential_p_value": _p_value(figures["sequential_p_value"]),
                    "verdict": verdict,
                    "verdict_class": verdict_class,
                    "guardrail": guardrail,
                    "guardrail_breached": bool(figures["guardrail_breached"]),
                }
            )
        comparisons.append(
            {"variant": comparison["variant"], "against": comparison["against"], "metrics": metrics}
        )
    srm = document["sample_ratio_mismatch"]
    return {
        "variants": variants,
        "comparisons": comparisons,
        "srm": {
            "statistic": DASH if _missing(srm["statistic"]) else f"{srm['statistic']:.3f}",
            "p_value": _p_value(srm["p_value"]),
            "flagged": bool(srm["flagged"]),
        },
    }


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin[Experiment]):
    """A/B tests between versions of a graph: drafted here with their variants, then started
    and stopped by the actions; read-only once started. Results on a page of their own."""

    form = ExperimentForm
    inlines = [VariantInline]
    list_display = [
        "key",
        "graph",
        "status_text",
        "variants_summary",
        "coverage_share",
        "started_at",
        "ended_at",
        "results_link",
    ]
    list_filter = ["status", "graph"]
    list_select_related = ["graph"]
    search_fields = ["key", "hypothesis", "graph__name"]
    date_hierarchy = "created_at"
    actions = ["start", "stop"]
    _STATE_FIELDS = [
        "status",
        "started_at",
        "ended_at",
        "stopped_reason",
        "salt",
        "created_by",
        "created_at",
        "results_link",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Experiment]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "variants",
                    queryset=Variant.objects.select_related("version").order_by("position"),
                )
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Experiment | None = None) -> Any:
        editable = ["graph", "key", "hypothesis", "coverage", "min_units", "guardrails"]
        if obj is None:
            return [(None, {"fields": editable})]
        return [(None, {"fields": editable}), ("State", {"fields": self._STATE_FIELDS})]

    def get_readonly_fields(self, request: HttpRequest, obj: Experiment | None = None) -> Any:
        if obj is None:
            return []
        return ["graph", *self._STATE_FIELDS]  # a saved experiment keeps its graph

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        # Deleting would take a running experiment's assignments with it: drafts are deleted
        # from their own page only.
        actions.pop("delete_selected", None)
        return actions

    # Permissions: a draft is edited; a running or stopped experiment is only looked at.

    def has_change_permission(self, request: HttpRequest, obj: Experiment | None = None) -> bool:
        return _is_draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Experiment | None = None) -> bool:
        return _is_draft(obj) and super().has_delete_permission(request, obj)

    # Saving -------------------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Experiment, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = _actor(request)
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Variants are numbered in the order shown: the first is the control (position 0)."""
        if formset.model is not Variant:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)
        for gone in formset.deleted_objects:
            gone.delete()
        deleted = set(formset.deleted_forms)
        rows = [f.instance for f in formset.initial_forms if f not in deleted]
        rows += [f.instance for f in formset.extra_forms if f.has_changed() and f not in deleted]
        # Kept rows are in ascending position and each moves down or stays, so renumbering
        # them in order never collides with a position still taken.
        for position, variant in enumerate(rows):
            variant.experiment = form.instance
            variant.position = position
            variant.save()
        formset.save_m2m()

    # The list -----------------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_text(self, experiment: Experiment) -> SafeString | str:
        if experiment.status == Experiment.Status.STOPPED and experiment.stopped_reason:
            return format_html(
                '{}<br><small title="{}">{}</small>',
                experiment.get_status_display(),
                experiment.stopped_reason,
                Truncator(experiment.stopped_reason).chars(80),
            )
        return experiment.get_status_display()

    @admin.display(description="variants")
    def variants_summary(self, experiment: Experiment) -> str:
        variants = sorted(experiment.variants.all(), key=lambda v: v.position)
        if not variants:
            return DASH
        return " / ".join(f"{v.name} v{v.version.number} {_share(v.weight)}" for v in variants)

    @admin.display(description="coverage", ordering="coverage")
    def coverage_share(self, experiment: Experiment) -> str:
        return _share(experiment.coverage)

    @admin.display(description="results")
    def results_link(self, experiment: Experiment) -> SafeString | str:
        if experiment.pk is None:
            return DASH
        return format_html('<a href="{}">results</a>', _results_url(experiment.pk))

    # Actions ------------------------------------------------------------------------------------

    @admin.action(description="Start the selected draft experiments", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        now = timezone.now()
        for experiment in queryset.select_related("graph"):
            try:
                experiments.start(experiment, now=now)
            except experiments.ExperimentError as exc:
                self.message_user(request, f"{experiment}: {exc}", messages.ERROR)
                continue
            self.log_change(request, experiment, "Started.")
            self.message_user(request, f"{experiment}: started.", messages.SUCCESS)

    @admin.action(description="Stop the selected running experiments", permissions=["change"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        now = timezone.now()
        reason = f"stopped by {_actor(request)}"
        for experiment in queryset:
            if not experiments.stop(experiment, now=now, reason=reason):
                self.message_user(
                    request,
                    f"{experiment} is {experiment.status}, not running: not stopped.",
                    messages.ERROR,
                )
                continue
            self.log_change(request, experiment, f"Stopped: {reason}.")
            self.message_user(request, f"{experiment}: stopped.", messages.SUCCESS)

    # The results page ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/results/",
                self.admin_site.admin_view(self.results_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_results",
            )
        ]
        return [*own, *super().get_urls()]

    def results_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        """Per-variant figures, comparisons with the control and the sample-ratio check,
        computed from the runs now (``versioning.results.compute``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        experiment = self.get_object(request, unquote(object_id))
        if experiment is None:
            raise Http404(f"No experiment with id {object_id!r}.")
        if not self.has_view_permission(request, experiment):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": f"Results of {experiment.key}",
            "opts": self.opts,
            "experiment": experiment,
            "graph_url": reverse("admin:versioning_graph_change", args=[experiment.graph_id]),
            "media": self.media,
            "has_results": False,
        }
        if experiment.variants.exists():
            document = compute_results(experiment, now=timezone.now())
            context.update(has_results=True, **results_context(experiment, document))
            context["chart_data"] = {"charts": result_charts.charts(document)}
        request.current_app = self.admin_site.name
        return TemplateResponse(request, RESULTS_TEMPLATE, context)
