"""REST endpoints for comparisons: start one (several candidates, one dataset, the best kept) and read it.

A comparison is a training job with candidates (training/services/comparison.py), so it is approved,
rejected and cancelled through the job's own endpoints; these two start it and show the comparison.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.auth import ManageScope, ReadScope, assistant_for_key, request_key, require_user_permission
from assistants.schema import ErrorSerializer
from assistants.serializers import JsonInputSerializer
from training import selectors, services
from training.api_datasets import DatasetOptionsField
from training.api_jobs import CONFLICT_ACTIVE, JobSerializer
from training.comparison_spec import (
    BACKENDS,
    LABEL_MAX,
    MAX_CANDIDATES,
    MAX_TOP_K,
    MIN_CANDIDATES,
    MIN_TOP_K,
    ONLINE_BEST_AB,
    ONLINE_CHOICES,
    ComparisonInvalid,
)
from training.models import TrainingJob


class CandidateInputSerializer(JsonInputSerializer):
    label = serializers.CharField(max_length=LABEL_MAX, help_text="Unique in the comparison, e.g. A.")
    backend = serializers.ChoiceField(choices=list(BACKENDS), default="local")
    base_model = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="openai: the provider model to fine-tune (default: the policy's). local: leave empty.",
    )
    settings = serializers.DictField(
        required=False,
        default=dict,
        help_text='openai: n_epochs, batch_size, learning_rate_multiplier (a number or "auto"). local: '
        'threshold ("tuned", "coverage" with target_coverage, "fixed" with threshold_value) and features '
        '("word+char", "word", "char").',
    )


class CandidateSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    label = serializers.CharField()
    backend = serializers.CharField()
    base_model = serializers.CharField()
    settings = serializers.DictField()
    status = serializers.CharField()
    provider_job_id = serializers.CharField()
    model_version = serializers.CharField(source="model_version.name", default=None, allow_null=True)
    rank = serializers.IntegerField(allow_null=True)
    score = serializers.SerializerMethodField(help_text="Accuracy on the shared validation prompts.")
    score_ci = serializers.SerializerMethodField(help_text="Its 95 % bootstrap interval: [low, high].")
    metrics = serializers.DictField()
    evaluation = serializers.DictField()
    error = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_score(self, candidate) -> float | None:
        return (candidate.evaluation or {}).get("score")

    def get_score_ci(self, candidate) -> list[float]:
        return list((candidate.evaluation or {}).get("score_ci") or [])


class RankingSerializer(serializers.Serializer):
    metric = serializers.CharField()
    prompts = serializers.IntegerField(help_text="Validation prompts every ranked score rests on.")
    clustered = serializers.BooleanField(help_text="Resampled by customer rather than by prompt.")
    best = serializers.CharField(allow_null=True)
    runner_up = serializers.CharField(allow_null=True)
    difference = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        help_text="Best minus runner-up score: [estimate, low, high] of its paired 95 % bootstrap interval.",
    )
    distinguishable = serializers.BooleanField(
        allow_null=True, help_text="Whether that interval excludes 0; null with fewer than two ranked."
    )


class ChosenSerializer(serializers.Serializer):
    label = serializers.CharField()
    why = serializers.CharField()


class ComparisonSerializer(serializers.Serializer):
    job = JobSerializer(source="*")
    online = serializers.SerializerMethodField()
    top_k = serializers.SerializerMethodField()
    candidates = CandidateSerializer(many=True, source="candidates.all")
    ranking = serializers.SerializerMethodField()
    chosen = serializers.SerializerMethodField(help_text="The candidate the job deploys, and why.")
    experiment = serializers.IntegerField(source="experiment_id", allow_null=True)
    experiment_winner = serializers.SerializerMethodField(
        help_text="The version the online experiment declared the winner, if it did."
    )

    def get_online(self, job: TrainingJob) -> str:
        return job.options["comparison"].get("online", ONLINE_BEST_AB)

    def get_top_k(self, job: TrainingJob) -> int:
        return int(job.options["comparison"].get("top_k", MIN_TOP_K))

    @extend_schema_field(RankingSerializer(allow_null=True))
    def get_ranking(self, job: TrainingJob) -> dict | None:
        ranking = (job.evaluation or {}).get("comparison")
        return RankingSerializer(ranking).data if ranking else None

    @extend_schema_field(ChosenSerializer(allow_null=True))
    def get_chosen(self, job: TrainingJob) -> dict | None:
        chosen = (job.options or {}).get("chosen")
        return ChosenSerializer(chosen).data if chosen else None

    def get_experiment_winner(self, job: TrainingJob) -> str | None:
        # Experiment.winner (the abtesting app's multi-arm result); None until an experiment names one.
        winner = getattr(job.experiment, "winner", None) if job.experiment_id else None
        return winner.name if winner is not None else None


def _comparison_for_key(request: Request, job_id: int) -> TrainingJob:
    job = selectors.comparison_get(job_id=job_id)
    # A single job, another assistant's job and a missing one get the same answer.
    if job is None or not request_key(request).allows_assistant(job.assistant):
        raise exceptions.NotFound(f"No comparison {job_id}: no such job, or a job with a single candidate.")
    return job


class ComparisonCreateApi(APIView):
    """Start a comparison: the candidates train on one dataset, are ranked offline, the best is kept."""

    permission_classes = [ManageScope]

    class InputSerializer(JsonInputSerializer):
        assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
        candidates = serializers.ListField(
            child=CandidateInputSerializer(),
            min_length=MIN_CANDIDATES,
            max_length=MAX_CANDIDATES,
            help_text=f"{MIN_CANDIDATES} to {MAX_CANDIDATES} trainers with their settings.",
        )
        online = serializers.ChoiceField(
            choices=[c for c, _ in ONLINE_CHOICES],
            default=ONLINE_BEST_AB,
            help_text="best_ab: the best offline candidate goes to the usual A/B test; multi_arm: the top_k "
            "go to one multi-arm experiment (control and top_k variants).",
        )
        top_k = serializers.IntegerField(
            min_value=MIN_TOP_K, max_value=MAX_TOP_K, default=MIN_TOP_K, help_text="For multi_arm."
        )
        skip_ab_test = serializers.BooleanField(required=False, default=False)
        auto_approve = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Approve in advance, in the acting user's name (needs the approve permission).",
        )
        dataset_options = DatasetOptionsField(required=False, help_text="Data-filter overrides for this run.")

    @extend_schema(
        request=InputSerializer,
        responses={
            201: ComparisonSerializer,
            409: CONFLICT_ACTIVE,
            400: OpenApiResponse(ErrorSerializer, description="Invalid candidates or options."),
        },
    )
    def post(self, request: Request) -> Response:
        # As POST /api/v1/jobs: the key acts for a user who may start jobs.
        require_user_permission(request, services.TRIGGER_PERM)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        assistant = assistant_for_key(request, v.get("assistant"))
        options = {
            name: v[name] for name in ("skip_ab_test", "auto_approve", "dataset_options") if v.get(name)
        }
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        comparison = {"candidates": v["candidates"], "online": v["online"], "top_k": v["top_k"]}
        try:
            job = services.trigger_training(
                assistant=assistant,
                trigger=TrainingJob.Trigger.MANUAL,
                options=options,
                user=user,
                comparison=comparison,
                reasons=[f"Comparison of {len(v['candidates'])} candidates started through the API."],
            )
        except ComparisonInvalid as exc:
            raise exceptions.ValidationError({exc.field: [str(exc)]}) from None
        except ValueError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from None
        job = selectors.comparison_get(job_id=job.pk)
        return Response(ComparisonSerializer(job).data, status=status.HTTP_201_CREATED)


class ComparisonDetailApi(APIView):
    permission_classes = [ReadScope]

    @extend_schema(responses={200: ComparisonSerializer})
    def get(self, request: Request, job_id: int) -> Response:
        return Response(ComparisonSerializer(_comparison_for_key(request, job_id)).data)
