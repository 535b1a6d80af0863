from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import ingest
from monitoring.auth import IngestScope, ManageScope, ReadScope, actor
from monitoring.openapi import (
    AUTH_ERRORS,
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    ErrorDetailSerializer,
    FieldErrorsSerializer,
    IngestItemSerializer,
)

from . import experiments, services
from .models import Experiment, Graph, GraphVersion, Variant, VersionEvent
from .openapi import (
    ExperimentResultsSerializer,
    RecordedSerializer,
    ResolutionSerializer,
    VersionDiffSerializer,
)
from .results import compute as compute_results
from .serializers import (
    CreateExperimentSerializer,
    ExperimentSerializer,
    GraphSerializer,
    GraphVersionDetailSerializer,
    GraphVersionSerializer,
    ReasonSerializer,
    RecordResultSerializer,
    RegisterVersionSerializer,
    ResolveQuerySerializer,
    VersionEventSerializer,
)


class ByName(CursorPagination):
    ordering = "name"


@extend_schema_view(
    list=extend_schema(
        tags=["graphs"],
        summary="List graphs",
        responses={200: GraphSerializer(many=True), **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["graphs"],
        summary="Read a graph",
        responses={200: GraphSerializer, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
)
class GraphViewSet(viewsets.ReadOnlyModelViewSet[Graph]):
    """Every graph lgmon has seen, by name."""

    queryset = Graph.objects.all()
    serializer_class = GraphSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    pagination_class = ByName


# --- versions ------------------------------------------------------------------------------------


class NewestVersionFirst(CursorPagination):
    ordering = "-number"


class NewestEventFirst(CursorPagination):
    ordering = ("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(
        tags=["versions"],
        summary="List a graph's versions",
        responses={200: GraphVersionSerializer(many=True), **AUTH_ERRORS, 404: NOT_FOUND},
    ),
    retrieve=extend_schema(
        tags=["versions"],
        summary="Read a version with its definition",
        responses={200: GraphVersionDetailSerializer, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
    create=extend_schema(
        tags=["versions"],
        summary="Register a version",
        description="Needs the manage scope. A definition registered already answers its "
        "version with 200.",
        request=RegisterVersionSerializer,
        responses={
            201: OpenApiResponse(GraphVersionSerializer, description="A new version."),
            200: OpenApiResponse(
                GraphVersionSerializer, description="The definition's existing version."
            ),
            400: BAD_REQUEST,
            **AUTH_ERRORS,
        },
    ),
    activate=extend_schema(
        tags=["versions"],
        summary="Activate a version",
        description="Needs the manage scope.",
        request=ReasonSerializer,
        responses={
            200: VersionEventSerializer,
            400: BAD_REQUEST,
            **AUTH_ERRORS,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    ),
    rollback=extend_schema(
        tags=["versions"],
        summary="Roll back to a version",
        description="Needs the manage scope and a reason.",
        request=ReasonSerializer,
        responses={
            200: VersionEventSerializer,
            400: BAD_REQUEST,
            **AUTH_ERRORS,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    ),
    diff=extend_schema(
        tags=["versions"],
        summary="Changes from another version to this one",
        parameters=[
            OpenApiParameter(
                "against",
                int,
                description="The version to compare with (default: the one before; 0: none).",
            )
        ],
        responses={200: VersionDiffSerializer, 400: BAD_REQUEST, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
)
class GraphVersionViewSet(viewsets.GenericViewSet[GraphVersion]):
    """A graph's versions (``/api/v1/graphs/<name>/versions/``): list and read (read scope),
    register, activate and roll back (manage scope), and the diff between two."""

    permission_classes = [ReadScope]
    manage_permissions = {
        "create": "versioning.add_graphversion",
        "activate": "versioning.activate_graphversion",
        "rollback": "versioning.activate_graphversion",
    }
    pagination_class = NewestVersionFirst
    lookup_field = "number"
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[GraphVersion]:
        return GraphVersion.objects.filter(graph__name=self.kwargs["graph_name"]).select_related(
            "graph"
        )

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action == "create":
            return RegisterVersionSerializer
        if self.action == "retrieve":
            return GraphVersionDetailSerializer
        return GraphVersionSerializer

    def list(self, request: Request, graph_name: str) -> Response:
        get_object_or_404(Graph, name=graph_name)
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(GraphVersionSerializer(page, many=True).data)

    def retrieve(self, request: Request, graph_name: str, number: str) -> Response:
        return Response(GraphVersionDetailSerializer(self.get_object()).data)

    def get_permissions(self) -> Sequence[Any]:
        if self.action in ("create", "activate", "rollback"):
            return [ManageScope()]
        return super().get_permissions()

    def create(self, request: Request, graph_name: str) -> Response:
        """Register a definition; an existing definition answers its version with 200."""
        body = RegisterVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        registered = services.register(
            graph_name,
            body.validated_data["definition"],
            description=body.validated_data.get("description", ""),
            source=body.validated_data.get("source", ""),
            created_by=actor(request),
        )
        code = status.HTTP_201_CREATED if registered.created else status.HTTP_200_OK
        return Response(GraphVersionSerializer(registered.version).data, status=code)

    @action(detail=True, methods=["post"])
    def activate(self, request: Request, graph_name: str, number: str) -> Response:
        return self._change(request, rollback=False)

    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, graph_name: str, number: str) -> Response:
        return self._change(request, rollback=True)

    def _change(self, request: Request, *, rollback: bool) -> Response:
        version = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data.get("reason", "")
        if rollback and not reason.strip():
            raise ValidationError({"reason": ["A rollback needs a reason."]})
        try:
            if rollback:
                event = services.rollback(version, actor=actor(request), reason=reason)
            else:
                event = services.activate(version, actor=actor(request), reason=reason)
        except services.VersionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(VersionEventSerializer(event).data)

    @action(detail=True, methods=["get"])
    def diff(self, request: Request, graph_name: str, number: str) -> Response:
        """``?against=<number>``: what changed from that version to this one (default: the
        version before it)."""
        version = self.get_object()
        raw = request.query_params.get("against", str(version.number - 1))
        if not raw.isdigit():
            raise ValidationError({"against": ["A version number."]})
        before: dict[str, Any]
        from_number: int | None
        if raw == "0":  # the first version, against nothing: all of it is new
            before, from_number = {}, None
        else:
            other = self.get_queryset().filter(number=int(raw)).first()
            if other is None:
                raise ValidationError({"against": [f"{graph_name} has no version {raw}."]})
            before, from_number = other.definition, other.number
        return Response(
            {
                "graph": graph_name,
                "from": from_number,
                "to": version.number,
                "changes": services.diff(before, version.definition),
            }
        )


@extend_schema_view(
    get=extend_schema(
        tags=["versions"],
        summary="A graph's activations and rollbacks",
        responses={200: VersionEventSerializer(many=True), **AUTH_ERRORS, 404: NOT_FOUND},
    )
)
class VersionHistoryView(ListAPIView[VersionEvent]):
    """Every activation and rollback of a graph, newest first."""

    serializer_class = VersionEventSerializer
    pagination_class = NewestEventFirst

    def get_queryset(self) -> QuerySet[VersionEvent]:
        graph = get_object_or_404(Graph, name=self.kwargs["graph_name"])
        return VersionEvent.objects.filter(graph=graph).select_related(
            "graph", "from_version", "to_version"
        )


@extend_schema_view(
    get=extend_schema(
        tags=["versions"],
        summary="The version to run for a user or session",
        parameters=[ResolveQuerySerializer],
        responses={
            200: ResolutionSerializer,
            400: BAD_REQUEST,
            **AUTH_ERRORS,
            404: OpenApiResponse(
                ErrorDetailSerializer, description="No such graph, or it has no active version."
            ),
        },
    )
)
class ResolveView(APIView):
    """``GET /api/v1/graphs/<name>/resolve?user_id=&session_id=``: the version the app should
    run for this unit: the active one, or its variant of a running experiment. Open to ingest
    keys (the instrumented app) and read keys."""

    permission_classes = [IngestScope | ReadScope]

    def get(self, request: Request, graph_name: str) -> Response:
        graph = get_object_or_404(Graph, name=graph_name)
        params = ResolveQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        try:
            resolution = experiments.resolve(
                graph,
                user_id=params.validated_data.get("user_id", ""),
                session_id=params.validated_data.get("session_id", ""),
            )
        except experiments.NoActiveVersion as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        return Response(resolution.as_json())


# --- experiments ---------------------------------------------------------------------------------


class NewestExperimentFirst(CursorPagination):
    ordering = "-created_at"


@extend_schema_view(
    list=extend_schema(
        tags=["experiments"],
        summary="List experiments",
        responses={200: ExperimentSerializer(many=True), **AUTH_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["experiments"],
        summary="Read an experiment",
        responses={200: ExperimentSerializer, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
    create=extend_schema(
        tags=["experiments"],
        summary="Create an experiment",
        description="Needs the manage scope. The first variant is the control.",
        request=CreateExperimentSerializer,
        responses={201: ExperimentSerializer, 400: BAD_REQUEST, **AUTH_ERRORS},
    ),
    start=extend_schema(
        tags=["experiments"],
        summary="Start an experiment",
        description="Needs the manage scope.",
        request=None,
        responses={200: ExperimentSerializer, **AUTH_ERRORS, 404: NOT_FOUND, 409: CONFLICT},
    ),
    stop=extend_schema(
        tags=["experiments"],
        summary="Stop an experiment",
        description="Needs the manage scope.",
        request=ReasonSerializer,
        responses={
            200: ExperimentSerializer,
            400: BAD_REQUEST,
            **AUTH_ERRORS,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    ),
    results=extend_schema(
        tags=["experiments"],
        summary="An experiment's results",
        responses={200: ExperimentResultsSerializer, **AUTH_ERRORS, 404: NOT_FOUND},
    ),
    record=extend_schema(
        tags=["experiments"],
        summary="Record an outcome",
        description="Needs the ingest or the manage scope.",
        request=RecordResultSerializer,
        responses={
            201: RecordedSerializer,
            400: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="RecordRejected",
                    serializers=[FieldErrorsSerializer, IngestItemSerializer],
                    resource_type_field_name=None,
                ),
                description="An invalid body, or the outcome was rejected as a run.",
            ),
            **AUTH_ERRORS,
            404: NOT_FOUND,
        },
    ),
)
class ExperimentViewSet(viewsets.GenericViewSet[Experiment]):
    """A/B tests between versions of a graph: list and read (read scope); create, start and
    stop (manage scope); results, computed from the runs; and ``record`` for outcomes of runs
    that are not reported by the SDK (ingest scope)."""

    queryset = Experiment.objects.select_related("graph")
    serializer_class = ExperimentSerializer
    pagination_class = NewestExperimentFirst
    manage_permissions = {
        "create": "versioning.add_experiment",
        "start": "versioning.change_experiment",
        "stop": "versioning.change_experiment",
        "record": "versioning.change_experiment",
    }
    lookup_field = "key"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"

    def get_permissions(self) -> Sequence[Any]:
        if self.action in ("create", "start", "stop"):
            return [ManageScope()]
        if self.action == "record":
            return [(IngestScope | ManageScope)()]
        return [ReadScope()]

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ExperimentSerializer(page, many=True).data)

    def retrieve(self, request: Request, key: str) -> Response:
        return Response(ExperimentSerializer(self.get_object()).data)

    def create(self, request: Request) -> Response:
        body = CreateExperimentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        graph = data["graph"]
        with transaction.atomic():
            experiment = Experiment.objects.create(
                graph=graph,
                key=data["key"],
                hypothesis=data.get("hypothesis", ""),
                coverage=data["coverage"],
                min_units=data["min_units"],
                guardrails=data["guardrails"],
                created_by=actor(request),
            )
            versions = {v.number: v for v in GraphVersion.objects.filter(graph=graph)}
            Variant.objects.bulk_create(
                Variant(
                    experiment=experiment,
                    position=position,
                    name=variant["name"],
                    version=versions[variant["version"]],
                    weight=variant["weight"],
                )
                for position, variant in enumerate(data["variants"])
            )
        return Response(ExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def start(self, request: Request, key: str) -> Response:
        experiment = self.get_object()
        try:
            experiments.start(experiment, now=timezone.now())
        except experiments.ExperimentError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(ExperimentSerializer(experiment).data)

    @action(detail=True, methods=["post"])
    def stop(self, request: Request, key: str) -> Response:
        experiment = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data.get("reason", "") or f"stopped by {actor(request)}"
        if not experiments.stop(experiment, now=timezone.now(), reason=reason):
            detail = f"{experiment.key} is {experiment.status}, not running."
            return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
        return Response(ExperimentSerializer(experiment).data)

    @action(detail=True, methods=["get"])
    def results(self, request: Request, key: str) -> Response:
        """Per-variant figures and comparisons with the control, from the runs."""
        return Response(compute_results(self.get_object(), now=timezone.now()))

    @action(detail=True, methods=["post"])
    def record(self, request: Request, key: str) -> Response:
        """The seed's ``record_test_result``: one outcome, stored as a run of the variant's
        version so results read it like any other."""
        experiment = self.get_object()
        body = RecordResultSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        variant = experiment.variants.select_related("version").filter(name=data["variant"]).first()
        if variant is None:
            problem = f"{experiment.key} has no variant {data['variant']!r}."
            raise ValidationError({"variant": [problem]})
        now = timezone.now()
        run = {
            "run_id": str(uuid.uuid4()),
            "graph": experiment.graph.name,
            "status": "success" if data["success"] else "error",
            "started_at": (data.get("started_at") or now).isoformat(),
            "duration_ms": data["duration_ms"],
            "user_id": data.get("user_id", ""),
            "session_id": data.get("session_id", ""),
            "version": str(variant.version.number),
            "experiment": f"{experiment.key}:{variant.name}",
            "error": data.get("error", ""),
        }
        outcome = ingest.ingest({"graph_runs": [run]}, now)
        if outcome.counts["rejected"]:
            return Response(outcome.graph_runs[0], status=status.HTTP_400_BAD_REQUEST)
        return Response({"recorded": run["run_id"]}, status=status.HTTP_201_CREATED)
