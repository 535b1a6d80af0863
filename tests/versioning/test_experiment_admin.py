"""The experiment admin: drafting an experiment with its variants, starting and stopping it,
and its results page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitoring import ingest
from tests.conftest import graph_run
from tests.versioning.test_version_admin import register
from versioning import experiments
from versioning.models import Assignment, Experiment, GraphVersion, Variant

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:versioning_experiment_changelist"
ADD = "admin:versioning_experiment_add"


def change_url(experiment: Experiment) -> str:
    return reverse("admin:versioning_experiment_change", args=[experiment.pk])


def results_url(experiment_id: Any) -> str:
    return reverse("admin:versioning_experiment_results", args=[experiment_id])


@pytest.fixture
def versions() -> list[GraphVersion]:
    """bot v1 and v2, and other v1 (a version of another graph)."""
    return [register("a"), register("a", "b"), register("x", graph="other")]


def draft(
    versions: list[GraphVersion],
    key: str = "adds-b",
    *,
    weights: tuple[float, ...] = (0.5, 0.5),
    min_units: int = 100,
    **fields: Any,
) -> Experiment:
    experiment = Experiment.objects.create(
        graph=versions[0].graph, key=key, min_units=min_units, **fields
    )
    names = ["control", "treatment", "third"]
    for position, weight in enumerate(weights):
        Variant.objects.create(
            experiment=experiment,
            position=position,
            name=names[position],
            version=versions[min(position, 1)],
            weight=weight,
        )
    return experiment


def add_form(
    versions: list[GraphVersion],
    variants: list[tuple[str, GraphVersion, float]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The add form's POST: the experiment's fields and the variant inline's formset."""
    rows = (
        variants
        if variants is not None
        else [("control", versions[0], 0.5), ("treatment", versions[1], 0.5)]
    )
    data: dict[str, Any] = {
        "graph": versions[0].graph_id,
        "key": "adds-b",
        "hypothesis": "b helps",
        "coverage": "1.0",
        "min_units": "100",
        "guardrails": "on",
        "variants-TOTAL_FORMS": str(len(rows)),
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
    }
    for index, (name, version, weight) in enumerate(rows):
        data[f"variants-{index}-name"] = name
        data[f"variants-{index}-version"] = str(version.pk)
        data[f"variants-{index}-weight"] = str(weight)
    data.update(fields)
    return data


def act(client: Client, action: str, *experiments_: Experiment) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [e.pk for e in experiments_], "index": 0},
        follow=True,
    )


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def formset_errors(response: Any) -> list[str]:
    """Every error of the variant inline: the formset's own and each form's."""
    [formset] = response.context["inline_admin_formsets"]
    errors = [str(error) for error in formset.formset.non_form_errors()]
    for form_errors in formset.formset.errors:
        for field_errors in form_errors.values():
            errors.extend(str(error) for error in field_errors)
    return errors


def staff(django_user_model: Any, username: str, *codenames: str) -> Client:
    user = django_user_model.objects.create_user(username, f"{username}@x.org", "pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="versioning", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


# --- list and pages ------------------------------------------------------------------------------


def test_the_list_shows_variants_coverage_status_and_a_results_link(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    experiment = draft(versions, coverage=0.25)
    stopped = draft(versions, "old-test", weights=(0.9, 0.1))
    experiments.start(stopped, now=timezone.now())
    experiments.stop(stopped, now=timezone.now(), reason="<b>enough</b> data")

    response = admin_client_.get(reverse(CHANGELIST))

    assert response.status_code == 200
    content = response.content.decode()
    assert "control v1 50% / treatment v2 50%" in content
    assert "control v1 90% / treatment v2 10%" in content
    assert "25%" in content
    assert f'<a href="{results_url(experiment.pk)}">results</a>' in content
    assert "&lt;b&gt;enough&lt;/b&gt; data" in content and "<b>enough</b>" not in content
    actions = [name for name, _ in response.context["action_form"].fields["action"].choices]
    assert "start" in actions and "stop" in actions
    assert "delete_selected" not in actions


def test_a_draft_page_edits_its_variants(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    experiment = draft(versions)

    response = admin_client_.get(change_url(experiment))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="variants-0-weight"' in content
    assert 'name="_save"' in content
    # The version choices are the experiment graph's only.
    [formset] = response.context["inline_admin_formsets"]
    choices = formset.formset.forms[0].fields["version"].queryset
    assert sorted(str(v) for v in choices) == ["bot v1", "bot v2"]
    assert results_url(experiment.pk) in content


def test_the_add_page_renders(admin_client_: Client, versions: list[GraphVersion]) -> None:
    response = admin_client_.get(reverse(ADD))
    assert response.status_code == 200
    assert 'name="variants-1-version"' in response.content.decode()


# --- creating and editing a draft ----------------------------------------------------------------


def test_a_draft_is_created_with_its_variants_through_the_add_form(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    response = admin_client_.post(reverse(ADD), add_form(versions))

    assert response.status_code == 302, formset_errors(response)
    experiment = Experiment.objects.get()
    assert (experiment.key, experiment.status, experiment.created_by) == (
        "adds-b",
        "draft",
        "alice",
    )
    assert experiment.graph.name == "bot" and experiment.hypothesis == "b helps"
    variants = list(experiment.variants.order_by("position"))
    assert [(v.position, v.name, v.version.number, v.weight) for v in variants] == [
        (0, "control", 1, 0.5),
        (1, "treatment", 2, 0.5),
    ]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ((0.5, 0.4), "The weights must add up to 1 (±0.01); they add up to 0.9."),
        ((0.7, 0.7), "The weights must add up to 1 (±0.01); they add up to 1.4."),
        ((1.0, 0.0), "A share above 0 and at most 1."),
    ],
)
def test_weights_that_do_not_add_up_are_a_form_error_and_save_nothing(
    admin_client_: Client, versions: list[GraphVersion], weights: tuple[float, float], message: str
) -> None:
    rows = [("control", versions[0], weights[0]), ("treatment", versions[1], weights[1])]

    response = admin_client_.post(reverse(ADD), add_form(versions, rows))

    assert response.status_code == 200
    assert message in formset_errors(response)
    assert not Experiment.objects.exists() and not Variant.objects.exists()


def test_a_version_of_another_graph_is_a_form_error_and_saves_nothing(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    rows = [("control", versions[0], 0.5), ("treatment", versions[2], 0.5)]

    response = admin_client_.post(reverse(ADD), add_form(versions, rows))

    assert response.status_code == 200
    assert "other v1 is a version of other, not of bot." in formset_errors(response)
    assert not Experiment.objects.exists() and not Variant.objects.exists()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [("control", 0, 1.0)],
            "An experiment needs at least two variants: the first is the control.",
        ),
        ([("same", 0, 0.5), ("same", 1, 0.5)], "Please correct the duplicate data for name"),
        ([("has space", 0, 0.5), ("b", 1, 0.5)], "Enter a valid “slug”"),
    ],
)
def test_other_bad_variants_are_form_errors(
    admin_client_: Client,
    versions: list[GraphVersion],
    rows: list[tuple[str, int, float]],
    message: str,
) -> None:
    variants = [(name, versions[index], weight) for name, index, weight in rows]

    response = admin_client_.post(reverse(ADD), add_form(versions, variants))

    assert response.status_code == 200
    assert any(error.startswith(message) for error in formset_errors(response)), formset_errors(
        response
    )
    assert not Experiment.objects.exists()


def test_a_bad_coverage_is_a_form_error(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    response = admin_client_.post(reverse(ADD), add_form(versions, coverage="1.5"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["coverage"] == [
        "A share between 0 and 1 (1 = every unit)."
    ]
    assert not Experiment.objects.exists()


def test_editing_a_draft_renumbers_the_variants_in_the_order_shown(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    experiment = draft(versions, weights=(0.4, 0.3, 0.3))
    control, treatment, third = experiment.variants.order_by("position")
    data = add_form(
        versions,
        [
            ("control", versions[0], 0.4),
            ("treatment", versions[1], 0.3),
            ("third", versions[1], 0.3),
        ],
        key="adds-b-renamed",
    )
    data.pop("graph")  # read-only once saved
    data.update(
        {
            "variants-INITIAL_FORMS": "3",
            "variants-0-id": str(control.pk),
            "variants-0-experiment": str(experiment.pk),
            "variants-0-DELETE": "on",  # the old control goes; treatment becomes the control
            "variants-1-id": str(treatment.pk),
            "variants-1-experiment": str(experiment.pk),
            "variants-1-weight": "0.6",
            "variants-2-id": str(third.pk),
            "variants-2-experiment": str(experiment.pk),
            "variants-2-weight": "0.2",
            "variants-TOTAL_FORMS": "4",
            "variants-3-name": "fourth",
            "variants-3-version": str(versions[0].pk),
            "variants-3-weight": "0.2",
        }
    )

    response = admin_client_.post(change_url(experiment), data)

    assert response.status_code == 302, formset_errors(response)
    experiment.refresh_from_db()
    assert experiment.key == "adds-b-renamed"
    assert [
        (v.position, v.name, v.version.number, v.weight)
        for v in experiment.variants.order_by("position")
    ] == [(0, "treatment", 2, 0.6), (1, "third", 2, 0.2), (2, "fourth", 1, 0.2)]


# --- start and stop ------------------------------------------------------------------------------


def test_start_and_stop_actions(admin_client_: Client, versions: list[GraphVersion]) -> None:
    experiment = draft(versions)

    started = act(admin_client_, "start", experiment)

    assert messages_of(started) == ["adds-b: started."]
    experiment.refresh_from_db()
    assert experiment.status == "running" and experiment.started_at is not None

    again = act(admin_client_, "start", experiment)
    assert messages_of(again) == ["adds-b: adds-b is running; only a draft starts."]

    stopped = act(admin_client_, "stop", experiment)

    assert messages_of(stopped) == ["adds-b: stopped."]
    experiment.refresh_from_db()
    assert experiment.status == "stopped" and experiment.ended_at is not None
    assert experiment.stopped_reason == "stopped by alice"
    assert "stopped by alice" in admin_client_.get(change_url(experiment)).content.decode()
    assert messages_of(act(admin_client_, "stop", experiment)) == [
        "adds-b is stopped, not running: not stopped."
    ]


def test_start_refuses_what_experiments_start_refuses(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    lonely = draft(versions, "lonely", weights=(1.0,))
    first = draft(versions, "first")
    second = draft(versions, "second")

    response = act(admin_client_, "start", lonely, first, second)

    shown = messages_of(response)
    assert "lonely: An experiment needs at least two variants." in shown
    winner = Experiment.objects.get(status="running").key
    loser = "second" if winner == "first" else "first"
    assert f"{winner}: started." in shown
    assert f"{loser}: bot has a running experiment already; stop it first." in shown
    assert Experiment.objects.filter(status="running").count() == 1


def test_a_running_experiment_and_its_variants_are_read_only(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    experiment = draft(versions)
    experiments.start(experiment, now=timezone.now())
    control = experiment.variants.get(position=0)

    response = admin_client_.get(change_url(experiment))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="_save"' not in content
    assert 'name="variants-0-weight"' not in content
    assert 'name="key"' not in content
    assert "control" in content and "treatment" in content
    data = add_form(versions, key="renamed")
    data.update({"variants-INITIAL_FORMS": "2", "variants-0-id": str(control.pk)})
    assert admin_client_.post(change_url(experiment), data).status_code == 403
    delete = reverse("admin:versioning_experiment_delete", args=[experiment.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    experiment.refresh_from_db()
    assert experiment.key == "adds-b" and experiment.variants.count() == 2


# --- results -------------------------------------------------------------------------------------


def traffic(experiment: Experiment, variant: str, users: int, errors: int) -> None:
    """``users`` users with 2 runs each in ``variant``; the first ``errors`` users fail both."""
    chosen = Variant.objects.select_related("version").get(experiment=experiment, name=variant)
    started = timezone.now() - timedelta(minutes=30)
    runs = []
    for index in range(users):
        user = f"{variant}-{index}"
        Assignment.objects.create(experiment=experiment, unit=user, variant=chosen)
        for attempt in range(2):
            runs.append(
                graph_run(
                    "bot",
                    started_at=started,
                    status="error" if index < errors else "success",
                    duration_ms=100.0 + index + 10 * attempt,
                    user_id=user,
                    version=str(chosen.version.number),
                    experiment=f"{experiment.key}:{variant}",
                )
            )
    outcome = ingest.ingest({"graph_runs": runs}, timezone.now())
    assert not outcome.counts["rejected"]


def row(content: str, css_class: str) -> str:
    found = re.search(rf'<tr class="{css_class}">(.*?)</tr>', content, re.S)
    assert found, css_class
    return found.group(1)


@pytest.fixture
def running(versions: list[GraphVersion]) -> Experiment:
    experiment = draft(versions, min_units=50, hypothesis="<script>alert(1)</script>")
    experiments.start(experiment, now=timezone.now() - timedelta(hours=1))
    return experiment


def test_the_results_page_shows_figures_comparisons_and_verdicts(
    admin_client_: Client, running: Experiment
) -> None:
    traffic(running, "control", 60, errors=0)
    traffic(running, "treatment", 60, errors=30)

    response = admin_client_.get(results_url(running.pk))

    assert response.status_code == 200
    content = response.content.decode()
    control = row(content, "variant-control")
    assert re.findall(r'<td class="number[^"]*">([^<]*)</td>', control)[:5] == [
        "50%",
        "60",
        "60",
        "120",
        "100.0%",
    ]
    treatment = row(content, "variant-treatment")
    assert '<td class="number error-rate">50.0%</td>' in treatment
    assert '<td class="number success-rate">50.0%</td>' in treatment
    errors = row(content, "metric-error_rate")
    assert '<td class="verdict verdict-worse">WORSE</td>' in errors
    assert "+50.00 pp" in errors
    assert "BREACHED" in errors
    success = row(content, "metric-success_rate")
    assert '<td class="verdict verdict-worse">WORSE</td>' in success
    assert "<td>–</td>" in success  # not a guardrail
    assert "Sample ratio mismatch" not in content
    # Escaped: the hypothesis is shown as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)</script>" not in content
    assert response.context["title"] == "Results of adds-b"


def test_the_results_page_says_when_it_is_collecting_and_flags_a_sample_ratio_mismatch(
    admin_client_: Client, running: Experiment
) -> None:
    Experiment.objects.filter(pk=running.pk).update(min_units=500)
    traffic(running, "control", 90, errors=0)
    traffic(running, "treatment", 40, errors=0)

    content = admin_client_.get(results_url(running.pk)).content.decode()

    errors = row(content, "metric-error_rate")
    assert "collecting data (40/500)" in errors
    assert 'id="srm-warning"' in content and "Sample ratio mismatch" in content
    assert "FLAGGED" in content


def test_the_results_page_without_runs_shows_dashes(
    admin_client_: Client, running: Experiment
) -> None:
    content = admin_client_.get(results_url(running.pk)).content.decode()

    treatment = row(content, "variant-treatment")
    assert '<td class="number error-rate">–</td>' in treatment
    assert "collecting data (0/50)" in content


def test_the_results_page_of_a_stopped_experiment_shows_why(
    admin_client_: Client, running: Experiment
) -> None:
    experiments.stop(running, now=timezone.now(), reason="<i>guardrail</i> breached")

    content = admin_client_.get(results_url(running.pk)).content.decode()

    assert "&lt;i&gt;guardrail&lt;/i&gt; breached" in content


def test_the_results_page_of_a_draft_without_variants(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    empty = Experiment.objects.create(graph=versions[0].graph, key="empty")

    response = admin_client_.get(results_url(empty.pk))

    assert response.status_code == 200
    assert "No variants yet" in response.content.decode()


def test_the_results_page_of_an_unknown_experiment_is_404(
    admin_client_: Client, versions: list[GraphVersion]
) -> None:
    assert admin_client_.get(results_url(999_999)).status_code == 404
    assert admin_client_.get(results_url("nope")).status_code == 404


def test_the_results_page_needs_the_view_permission(
    django_user_model: Any, versions: list[GraphVersion], running: Experiment
) -> None:
    nobody = staff(django_user_model, "nobody")
    viewer = staff(django_user_model, "victor", "view_experiment")

    assert nobody.get(results_url(running.pk)).status_code == 403
    assert nobody.get(results_url(999_999)).status_code == 403
    assert viewer.get(results_url(running.pk)).status_code == 200
    # A viewer sees the list and the page, and may not start, stop or edit.
    listing = viewer.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert "action_form" not in listing.context or listing.context["action_form"] is None
    draft_page = viewer.get(change_url(draft(versions, "other-draft")))
    assert draft_page.status_code == 200
    assert 'name="_save"' not in draft_page.content.decode()


def test_the_admin_needs_a_signed_in_staff_user(client: Client, running: Experiment) -> None:
    response = client.get(results_url(running.pk))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
