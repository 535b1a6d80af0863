from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from versioning import services
from versioning.models import Graph, GraphVersion, VersionEvent

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:versioning_graphversion_changelist"


def definition(*nodes: str, description: str = "") -> dict[str, Any]:
    """A small graph running ``nodes`` in a line."""
    names = ["__start__", *nodes, "__end__"]
    result: dict[str, Any] = {
        "name": "bot",
        "nodes": [{"name": node, "callable": f"m.{node}"} for node in nodes],
        "edges": [[a, b] for a, b in itertools.pairwise(names)],
    }
    if description:
        result["description"] = description
    return result


def register(*nodes: str, graph: str = "bot", description: str = "") -> GraphVersion:
    return services.register(
        graph, definition(*nodes), description=description, source="abc123", created_by="ci"
    ).version


@pytest.fixture
def versions() -> list[GraphVersion]:
    """bot v1 (active), v2 and v3, each adding a node."""
    return [
        register("a", description="first"),
        register("a", "b", description="adds b"),
        register("a", "b", "c", description="adds c"),
    ]


@pytest.fixture
def viewer(django_user_model: Any) -> Client:
    """A staff user who may view versions, graphs and history, and nothing more."""
    user = django_user_model.objects.create_user("victor", "v@example.com", "pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="versioning",
            codename__in=["view_graph", "view_graphversion", "view_versionevent"],
        )
    )
    client = Client()
    client.force_login(user)
    return client


def active_number(graph: str = "bot") -> int | None:
    version = GraphVersion.objects.active().filter(graph__name=graph).first()
    return version.number if version else None


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- pages -----------------------------------------------------------------------------------


def test_it_lists_versions_with_hash_and_active_flag(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    response = admin_client_.get(reverse(CHANGELIST))
    assert response.status_code == 200
    content = response.content.decode()
    assert versions[0].content_hash[:12] in content
    assert "adds b" in content
    assert "abc123" in content
    assert [v.number for v in response.context["cl"].result_list] == [3, 2, 1]
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert "activate" in actions
    assert "rollback" in actions
    assert "delete_selected" not in actions


def test_it_filters_versions_by_active_and_searches(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    register("x", graph="other", description="unrelated")
    url = reverse(CHANGELIST)
    active = admin_client_.get(url, {"is_active__exact": "1"}).context["cl"].result_list
    assert sorted(str(v) for v in active) == ["bot v1", "other v1"]
    found = admin_client_.get(url, {"q": '"adds c"'}).context["cl"].result_list
    assert [str(v) for v in found] == ["bot v3"]
    by_hash = admin_client_.get(url, {"q": versions[1].content_hash[:10]}).context["cl"]
    assert [str(v) for v in by_hash.result_list] == ["bot v2"]
    graph = Graph.objects.get(name="other")
    by_graph = admin_client_.get(url, {"graph__id__exact": graph.pk}).context["cl"].result_list
    assert [str(v) for v in by_graph] == ["other v1"]


def test_the_version_page_shows_the_definition_and_the_diff_to_the_previous_version(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    response = admin_client_.get(
        reverse("admin:versioning_graphversion_change", args=[versions[1].pk])
    )
    assert response.status_code == 200
    content = response.content.decode()
    # The definition, indented JSON, escaped.
    assert "&quot;callable&quot;: &quot;m.b&quot;" in content
    # The diff from v1: node b and edges a → b, b → __end__ added; a → __end__ removed.
    assert "From <strong>v1</strong> to <strong>v2</strong>" in content
    assert "+ <strong>b</strong> <code>{&quot;callable&quot;: &quot;m.b&quot;}</code>" in content
    assert "+ <code>a → b</code>" in content
    assert '<li class="diff-removed" style="color: #cf222e">− <code>a → __end__</code>' in content
    # Read-only: no save buttons, no form fields for the version.
    assert 'name="_save"' not in content
    assert 'name="description"' not in content


def test_the_version_page_diffs_against_any_version_given(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    url = reverse("admin:versioning_graphversion_change", args=[versions[2].pk])
    content = admin_client_.get(url, {"against": "1"}).content.decode()
    assert "From <strong>v1</strong> to <strong>v3</strong>" in content
    assert "+ <strong>b</strong>" in content
    assert "+ <strong>c</strong>" in content
    assert '<a href="?against=2">v2</a>' in content

    missing = admin_client_.get(url, {"against": "9"}).content.decode()
    assert "has no other version &#x27;9&#x27; to compare with" in missing
    assert "From <strong>v2</strong> to <strong>v3</strong>" in missing

    first = admin_client_.get(
        reverse("admin:versioning_graphversion_change", args=[versions[0].pk])
    ).content.decode()
    assert "The first version: nothing before it to compare." in first


def test_the_diff_escapes_what_the_definition_holds(admin_client_: Client) -> None:
    register("a")
    evil = definition("a", "<script>alert(1)</script>")
    evil["retries"] = "<b>3</b>"
    version = services.register("bot", evil).version
    content = admin_client_.get(
        reverse("admin:versioning_graphversion_change", args=[version.pk])
    ).content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "<b>3</b>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;b&gt;3&lt;/b&gt;" in content


def test_the_diff_shows_changed_fields_before_and_after(admin_client_: Client) -> None:
    register("a")
    changed = definition("a")
    changed["nodes"][0]["callable"] = "m.a2"
    version = services.register("bot", changed).version
    content = admin_client_.get(
        reverse("admin:versioning_graphversion_change", args=[version.pk])
    ).content.decode()
    assert '~ <strong>a</strong><ul><li>callable: <del style="color: #cf222e">' in content
    assert "&quot;m.a&quot;</del> → <ins" in content
    assert "&quot;m.a2&quot;</ins>" in content


def test_the_graph_page_shows_versions_history_and_the_active_version(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    services.activate(versions[2], actor="alice")
    services.rollback(versions[1], actor="bob", reason="c is slow")
    graph = Graph.objects.get(name="bot")

    listing = admin_client_.get(reverse("admin:versioning_graph_changelist"))
    assert listing.status_code == 200
    version_url = reverse("admin:versioning_graphversion_change", args=[versions[1].pk])
    assert f'<a href="{version_url}">v2</a>' in listing.content.decode()

    response = admin_client_.get(reverse("admin:versioning_graph_change", args=[graph.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert "Versions (newest first)" in content
    assert "History (newest first)" in content
    assert versions[2].content_hash[:12] in content
    assert "c is slow" in content
    assert content.index("c is slow") < content.index("first version")  # newest first
    formsets = {fs.formset.prefix: fs for fs in response.context["inline_admin_formsets"]}
    numbers = [form.instance.number for form in formsets["versions"].formset.forms]
    assert numbers == [3, 2, 1]
    actions = [form.instance.action for form in formsets["version_events"].formset.forms]
    assert actions == ["rollback", "activate", "activate"]


def test_saving_a_graph_leaves_its_versions_alone(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    graph = Graph.objects.get(name="bot")
    url = reverse("admin:versioning_graph_change", args=[graph.pk])
    page = admin_client_.get(url)
    data: dict[str, Any] = {"name": "bot", "description": "the support bot"}
    for inline in page.context["inline_admin_formsets"]:
        prefix, forms = inline.formset.prefix, inline.formset.forms
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": len(forms),
                f"{prefix}-INITIAL_FORMS": len(forms),
                f"{prefix}-MIN_NUM_FORMS": 0,
                f"{prefix}-MAX_NUM_FORMS": 1000,
            }
        )
        for index, form in enumerate(forms):
            data[f"{inline.formset.prefix}-{index}-id"] = form.instance.pk
            data[f"{inline.formset.prefix}-{index}-graph"] = graph.pk
    response = admin_client_.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    graph.refresh_from_db()
    assert graph.description == "the support bot"
    assert GraphVersion.objects.filter(graph=graph).count() == 3


# --- actions ------------------------------------------------------------------------------------


def test_activate_makes_the_version_active_and_records_who(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    response = admin_client_.post(
        reverse(CHANGELIST),
        {"action": "activate", "_selected_action": [versions[2].pk], "index": 0},
        follow=True,
    )
    assert "bot: v3 is now active (was v1); activate recorded." in messages_of(response)
    assert active_number() == 3
    event = VersionEvent.objects.first()
    assert event is not None
    assert (event.action, event.actor, event.to_version, event.from_version) == (
        "activate",
        "alice",
        versions[2],
        versions[0],
    )


def test_activate_takes_exactly_one_version_and_reports_refusals(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    url = reverse(CHANGELIST)
    two = admin_client_.post(
        url,
        {"action": "activate", "_selected_action": [v.pk for v in versions[1:]], "index": 0},
        follow=True,
    )
    assert "Select exactly one version to activate." in messages_of(two)
    already = admin_client_.post(
        url,
        {"action": "activate", "_selected_action": [versions[0].pk], "index": 0},
        follow=True,
    )
    assert "bot v1 is the active version already." in messages_of(already)
    assert active_number() == 1
    assert VersionEvent.objects.count() == 1  # the first version's own activation


def test_rollback_asks_for_a_reason_first(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    services.activate(versions[2], actor="alice")
    url = reverse(CHANGELIST)
    selected = {"action": "rollback", "_selected_action": [versions[0].pk]}

    page = admin_client_.post(url, {**selected, "index": 0})
    assert page.status_code == 200
    assert page.templates[0].name == "admin/versioning/graphversion/rollback.html"
    content = page.content.decode()
    assert '<input type="hidden" name="post" value="yes">' in content
    assert '<input type="hidden" name="action" value="rollback">' in content
    assert f'name="_selected_action" value="{versions[0].pk}"' in content
    assert 'name="reason"' in content
    assert "− <strong>c</strong>" in content  # what rolling back from v3 to v1 removes
    assert active_number() == 3

    empty = admin_client_.post(url, {**selected, "post": "yes", "reason": "  "})
    assert empty.status_code == 200
    assert empty.context["form"].errors == {"reason": ["This field is required."]}
    assert "errornote" in empty.content.decode()
    assert active_number() == 3
    assert not VersionEvent.objects.filter(action="rollback").exists()

    done = admin_client_.post(
        url, {**selected, "post": "yes", "reason": "v3 breaks checkout"}, follow=True
    )
    assert "bot: v1 is now active (was v3); rollback recorded." in messages_of(done)
    assert active_number() == 1
    event = VersionEvent.objects.first()
    assert event is not None
    assert (event.action, event.reason, event.actor, event.from_version) == (
        "rollback",
        "v3 breaks checkout",
        "alice",
        versions[2],
    )


def test_rollback_refuses_a_version_not_before_the_active_one(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    response = admin_client_.post(
        reverse(CHANGELIST),
        {"action": "rollback", "_selected_action": [versions[2].pk], "index": 0},
        follow=True,
    )
    assert any("roll back to an earlier version" in m for m in messages_of(response))
    assert "admin/versioning/graphversion/rollback.html" not in [t.name for t in response.templates]
    assert active_number() == 1


def test_rollback_reports_a_refusal_from_the_service(
    admin_client_: Client, versions: list[GraphVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    services.activate(versions[1], actor="alice")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise services.VersionError("Someone else moved bot first.")

    monkeypatch.setattr(services, "rollback", refuse)
    response = admin_client_.post(
        reverse(CHANGELIST),
        {
            "action": "rollback",
            "_selected_action": [versions[0].pk],
            "post": "yes",
            "reason": "too late",
        },
        follow=True,
    )
    assert "Someone else moved bot first." in messages_of(response)
    assert active_number() == 2


def test_a_viewer_gets_no_actions_and_a_forged_post_changes_nothing(
    viewer: Client, versions: list[GraphVersion]
) -> None:
    services.activate(versions[2], actor="alice")
    url = reverse(CHANGELIST)
    page = viewer.get(url)
    assert page.status_code == 200
    assert page.context["action_form"] is None
    assert 'value="activate"' not in page.content.decode()
    view = viewer.get(reverse("admin:versioning_graphversion_change", args=[versions[1].pk]))
    assert view.status_code == 200
    events = VersionEvent.objects.count()

    activate = {"action": "activate", "_selected_action": [versions[0].pk], "index": 0}
    assert viewer.post(url, activate).status_code in (200, 302)
    forged = viewer.post(
        url,
        {
            "action": "rollback",
            "_selected_action": [versions[0].pk],
            "post": "yes",
            "reason": "forged",
        },
    )
    assert forged.status_code in (200, 302)
    assert active_number() == 3
    assert VersionEvent.objects.count() == events


def test_the_activate_permission_alone_grants_the_actions(
    viewer: Client, versions: list[GraphVersion], django_user_model: Any
) -> None:
    user = django_user_model.objects.get(username="victor")
    user.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="versioning", codename="activate_graphversion"
        )
    )
    response = viewer.post(
        reverse(CHANGELIST),
        {"action": "activate", "_selected_action": [versions[1].pk], "index": 0},
    )
    assert response.status_code == 302
    assert active_number() == 2
    assert VersionEvent.objects.first().actor == "victor"  # type: ignore[union-attr]


# --- immutability -------------------------------------------------------------------------------


def test_versions_cannot_be_changed_or_deleted(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    version = versions[1]
    delete = reverse("admin:versioning_graphversion_delete", args=[version.pk])
    assert admin_client_.get(delete).status_code == 403
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    change = reverse("admin:versioning_graphversion_change", args=[version.pk])
    response = admin_client_.post(change, {"description": "edited"})
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.description == "adds b"
    forged = admin_client_.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [version.pk], "post": "yes"},
    )
    assert forged.status_code in (200, 302)
    assert GraphVersion.objects.count() == 3


def test_version_events_are_read_only(admin_client_: Client, versions: list[GraphVersion]) -> None:
    services.activate(versions[2], actor="alice", reason="ship it")
    event = VersionEvent.objects.get(reason="ship it")
    listing = admin_client_.get(reverse("admin:versioning_versionevent_changelist"))
    assert listing.status_code == 200
    assert "ship it" in listing.content.decode()
    filtered = admin_client_.get(
        reverse("admin:versioning_versionevent_changelist"), {"action__exact": "rollback"}
    )
    assert list(filtered.context["cl"].result_list) == []

    assert admin_client_.get(reverse("admin:versioning_versionevent_add")).status_code == 403
    change = reverse("admin:versioning_versionevent_change", args=[event.pk])
    page = admin_client_.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client_.post(change, {"reason": "rewritten"}).status_code == 403
    delete = reverse("admin:versioning_versionevent_delete", args=[event.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    event.refresh_from_db()
    assert event.reason == "ship it"


# --- registering from the admin ---------------------------------------------------------------


def test_a_definition_pasted_in_the_add_form_is_registered(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    url = reverse("admin:versioning_graphversion_add")
    assert admin_client_.get(url).status_code == 200
    body = {
        "graph_name": "bot",
        "definition_json": json.dumps(definition("a", "d")),
        "description": "adds d",
        "source": "def456",
    }
    response = admin_client_.post(url, body)
    assert response.status_code == 302
    version = GraphVersion.objects.get(graph__name="bot", number=4)
    assert (version.description, version.source, version.created_by) == (
        "adds d",
        "def456",
        "alice",
    )
    assert version.content_hash == services.content_hash(definition("a", "d"))
    assert active_number() == 1  # registering does not activate

    again = admin_client_.post(url, {**body, "description": "again"}, follow=True)
    assert "That definition is registered already, as bot v4: nothing was added." in messages_of(
        again
    )
    assert GraphVersion.objects.filter(graph__name="bot").count() == 4

    bad = admin_client_.post(url, {**body, "definition_json": "[1, 2]"})
    assert bad.status_code == 200
    assert bad.context["adminform"].form.errors == {
        "definition_json": ["A definition is a JSON object."]
    }
