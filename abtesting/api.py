"""REST endpoints for experiments: list, detail (every figure of the analysis), stop (thin: services act)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from abtesting import selectors, services
from abtesting.models import Experiment
from assistants.api_pagination import ListPagination, paginated_response
from assistants.auth import ManageScope, ReadScope, assistant_for_key, request_key, require_user_permission
from assistants.schema import SLUG_SCHEMA, ErrorSerializer
from assistants.serializers import JsonInputSerializer

# An A/B test's variant status from its decision (a multi-arm test keeps one per arm in its analysis).
TWO_ARM_STATUS = {
    Experiment.Decision.VARIANT_BETTER: "better",
    Experiment.Decision.VARIANT_WORSE: "worse",
    Experiment.Decision.NO_DIFFERENCE: "no_difference",
    Experiment.Decision.INCONCLUSIVE: "inconclusive",
}


class ArmSerializer(serializers.Serializer):
    arm = serializers.CharField(
        help_text='"control", "variant", "variant2", ... as /api/v1/route names them.'
    )
    version = serializers.CharField(help_text="The model version the arm serves.")
    status = serializers.CharField(
        help_text="control; else open, better, worse (dropped), no_difference or inconclusive: the variant's "
        "decision, or each arm's at the last planned look of a multi-arm test."
    )
    dropped_at_look = serializers.IntegerField(
        allow_null=True, help_text="Multi-arm: the planned look that dropped the arm as significantly worse."
    )


class ExperimentSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assistant = serializers.CharField(source="assistant.slug")
    purpose = serializers.CharField()
    control = serializers.CharField(source="control.name")
    variant = serializers.CharField(source="variant.name")
    arms = serializers.SerializerMethodField(
        help_text="Every arm, control first: two for an A/B test, up to five for a multi-arm test."
    )
    winner = serializers.CharField(
        source="winner.name",
        default=None,
        allow_null=True,
        help_text="The version found best (decision variant_better): the variant, or the winning arm's.",
    )
    traffic_split = serializers.FloatField(
        help_text="The variants' share of traffic (all variants together; equal shares for a multi-arm test)."
    )
    status = serializers.CharField()
    outcome = serializers.CharField(
        help_text='In words: the decision, or "stopped early by <user>: no decision" (never a verdict).'
    )
    decision = serializers.CharField()
    decision_reason = serializers.CharField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    analysed_at = serializers.DateTimeField(allow_null=True)
    ab_test_results = serializers.SerializerMethodField()

    def get_ab_test_results(self, obj: Experiment) -> dict:
        return (obj.last_analysis or {}).get("ab_test_results", {})

    @extend_schema_field(ArmSerializer(many=True))
    def get_arms(self, obj: Experiment) -> list[dict]:
        figures = (obj.last_analysis or {}).get("arms") or {}
        arms = []
        for arm, version in obj.arm_versions():
            mine = figures.get(arm) or {} if obj.is_multi_arm else {}
            if arm == "control":
                status = "control"
            elif obj.is_multi_arm:
                status = mine.get("status") or "open"
            else:
                status = TWO_ARM_STATUS.get(obj.decision, "open")
            arms.append(
                {
                    "arm": arm,
                    "version": version.name,
                    "status": status,
                    "dropped_at_look": mine.get("dropped_at_look"),
                }
            )
        return ArmSerializer(arms, many=True).data


class ExperimentDetailSerializer(ExperimentSummarySerializer):
    min_sample_size = serializers.IntegerField()
    max_duration_days = serializers.FloatField()
    significance_level = serializers.FloatField()
    min_improvement = serializers.FloatField()
    stopped_by = serializers.CharField(source="stopped_by.username", default=None, allow_null=True)
    stages = serializers.ListField(child=serializers.FloatField())
    stage_index = serializers.IntegerField()
    stage_hours = serializers.FloatField()
    stage_started_at = serializers.DateTimeField(allow_null=True)
    analysis = serializers.JSONField(
        source="last_analysis", help_text="The last stored analysis (a planned look, or the stop's)."
    )
    interim = serializers.SerializerMethodField(
        help_text="Running experiments: live figures with the always-valid confidence sequence (interim: "
        "valid however often you look; the decision is taken at planned looks). Null otherwise."
    )
    history = serializers.SerializerMethodField()

    def get_history(self, obj: Experiment) -> list[dict]:
        return selectors.experiment_history(experiment=obj)

    def get_interim(self, obj: Experiment) -> dict | None:
        return self.context.get("interim")


def _visible(request: Request, experiment_id: int) -> Experiment:
    """The experiment, if this key may see its assistant; 404 otherwise (don't reveal other assistants')."""
    experiment = selectors.experiment_get(experiment_id=experiment_id)
    if experiment is None or not request_key(request).allows_assistant(experiment.assistant):
        raise exceptions.NotFound(f"No experiment {experiment_id}.")
    return experiment


class ExperimentPagination(ListPagination):
    # The selector's order: newest first by start (set once, at creation), the id breaking ties.
    ordering = ("-started_at", "-id")


class ExperimentListApi(APIView):
    permission_classes = [ReadScope]
    pagination_class = ExperimentPagination

    class FilterSerializer(serializers.Serializer):
        assistant = serializers.SlugField(required=False)
        status = serializers.ChoiceField(choices=Experiment.Status.choices, required=False)
        purpose = serializers.ChoiceField(choices=Experiment.Purpose.choices, required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter("assistant", SLUG_SCHEMA, description="Assistant slug"),
            # Empty means "any", as an HTML form's blank choice does.
            OpenApiParameter("status", str, enum=[*Experiment.Status.values, ""]),
            OpenApiParameter("purpose", str, enum=[*Experiment.Purpose.values, ""]),
        ],
        responses={200: ExperimentSummarySerializer(many=True)},
        operation_id="api_v1_experiments_list",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        key = request_key(request)
        if f.get("assistant"):
            assistant = assistant_for_key(request, f["assistant"])
        else:
            assistant = key.assistant if key.assistant_id is not None else None
        qs = selectors.experiment_list(
            assistant=assistant, status=f.get("status"), purpose=f.get("purpose"), prefetch=True
        )
        return paginated_response(self, request, qs, ExperimentSummarySerializer)


class ExperimentDetailApi(APIView):
    permission_classes = [ReadScope]

    @extend_schema(responses={200: ExperimentDetailSerializer})
    def get(self, request: Request, experiment_id: int) -> Response:
        experiment = _visible(request, experiment_id)
        interim = services.experiment_interim(experiment=experiment)
        return Response(ExperimentDetailSerializer(experiment, context={"interim": interim}).data)


class ExperimentStopApi(APIView):
    permission_classes = [ManageScope]

    class InputSerializer(JsonInputSerializer):
        reason = serializers.CharField(
            max_length=2000, help_text="Why it is stopped (kept on the experiment)."
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            200: ExperimentDetailSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                description="The experiment is no longer running (already stopped or concluded); "
                "the message names its status.",
            ),
        },
    )
    def post(self, request: Request, experiment_id: int) -> Response:
        experiment = _visible(request, experiment_id)
        # Stopping moves customers' traffic: a person must be accountable for it.
        require_user_permission(request, "abtesting.change_experiment")
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.experiment_stop(
            experiment=experiment, user=request.user, reason=payload.validated_data["reason"]
        )
        experiment = selectors.experiment_get(experiment_id=experiment.pk)
        return Response(ExperimentDetailSerializer(experiment).data)
