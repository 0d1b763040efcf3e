"""REST endpoints for training jobs, the retrain check, health and rollback (thin: services act)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.api_pagination import ListPagination, paginated_response
from assistants.auth import ManageScope, ReadScope, assistant_for_key, request_key, require_user_permission
from assistants.schema import ErrorSerializer
from assistants.serializers import JsonInputSerializer, QueryChoiceField, QuerySerializer, QueryTextField
from feedback.serializers import FeedbackStatsSerializer
from training import selectors, services
from training.api_datasets import DatasetOptionsField
from training.models import TrainingJob

CONFLICT_ACTIVE = OpenApiResponse(ErrorSerializer, description="The assistant already has a job in flight.")
CONFLICT_STATUS = OpenApiResponse(
    ErrorSerializer, description="The job's status does not allow this (any more)."
)


class JobEventSerializer(serializers.Serializer):
    kind = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    message = serializers.CharField()
    data = serializers.JSONField()
    user = serializers.CharField(source="user.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()


class JobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assistant = serializers.CharField(source="assistant.slug")
    trigger = serializers.CharField()
    status = serializers.CharField()
    reasons = serializers.JSONField()
    options = serializers.JSONField()
    backend = serializers.CharField()
    base_model = serializers.CharField()
    provider_job_id = serializers.CharField()
    dataset = serializers.IntegerField(source="dataset_id", allow_null=True)
    feedback_count = serializers.IntegerField()
    new_model_version = serializers.CharField(source="new_model_version.name", default=None, allow_null=True)
    metrics = serializers.JSONField()
    evaluation = serializers.JSONField()
    experiment = serializers.IntegerField(source="experiment_id", allow_null=True)
    ab_test_results = serializers.JSONField()
    error = serializers.CharField()
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)
    decision_reason = serializers.CharField()
    deployed = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    deadline_at = serializers.DateTimeField(allow_null=True)

    def get_deployed(self, job: TrainingJob) -> bool:
        return job.status == TrainingJob.Status.DEPLOYED


class JobDetailSerializer(JobSerializer):
    events = JobEventSerializer(many=True, source="events.all")


def _job_for_key(request: Request, job_id: int) -> TrainingJob:
    job = selectors.job_get(job_id=job_id)
    if job is None:
        raise exceptions.NotFound(f"No training job {job_id}.")
    key = request_key(request)
    if not key.allows_assistant(job.assistant):
        # Same answer as a missing job: a key bound to another assistant learns nothing about this one.
        raise exceptions.NotFound(f"No training job {job_id}.")
    return job


def _detail(job_id: int) -> dict:
    return JobDetailSerializer(selectors.job_get(job_id=job_id)).data


class JobPagination(ListPagination):
    # created_at is indexed and never changes; the id orders jobs created in the same microsecond.
    ordering = ("-created_at", "-id")


class JobListCreateApi(APIView):
    """GET lists jobs (read scope); POST starts one (manage scope). One URL, so one class with two methods."""

    pagination_class = JobPagination

    def get_permissions(self):
        return [ManageScope()] if self.request.method == "POST" else [ReadScope()]

    class InputSerializer(JsonInputSerializer):
        assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
        base_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
        skip_ab_test = serializers.BooleanField(required=False, default=False)
        auto_approve = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Approve in advance, in the acting user's name (needs the approve permission). "
            "Used only when the policy does not require approval; never skips a reviewer it requires.",
        )
        dataset_options = DatasetOptionsField(required=False, help_text="Data-filter overrides for this run.")

    class FilterSerializer(QuerySerializer):
        assistant = QueryTextField()
        status = QueryChoiceField(
            choices=["", *sorted(TrainingJob.Status.values)],
            help_text="Empty: any.",
            error_messages={
                "invalid_choice": "Unknown status '{input}': use one of "
                f"{', '.join(TrainingJob.Status.values)}."
            },
        )

    @extend_schema(parameters=[FilterSerializer], responses={200: JobSerializer(many=True)})
    def get(self, request: Request) -> Response:
        f = self.FilterSerializer.parse(request)
        slug = f.get("assistant")
        if slug or request_key(request).assistant_id:
            jobs = selectors.job_list(assistant=assistant_for_key(request, slug), status=f.get("status"))
        else:
            jobs = selectors.job_list(status=f.get("status"))
        return paginated_response(self, request, jobs, JobSerializer)

    @extend_schema(request=InputSerializer, responses={201: JobDetailSerializer, 409: CONFLICT_ACTIVE})
    def post(self, request: Request) -> Response:
        # A person answers for every job started by hand: the key must act for a user who may start jobs
        # (as for cancelling), and `auto_approve` further needs that user's right to approve.
        require_user_permission(request, services.TRIGGER_PERM)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        assistant = assistant_for_key(request, v.get("assistant"))
        options = {
            name: v[name]
            for name in ("base_model", "skip_ab_test", "auto_approve", "dataset_options")
            if v.get(name)
        }
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        try:
            job = services.trigger_training(
                assistant=assistant, trigger=TrainingJob.Trigger.MANUAL, options=options, user=user
            )
        except ValueError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(_detail(job.pk), status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    permission_classes = [ReadScope]

    @extend_schema(responses={200: JobDetailSerializer})
    def get(self, request: Request, job_id: int) -> Response:
        return Response(JobDetailSerializer(_job_for_key(request, job_id)).data)


def _decide(request: Request, job_id: int, action, perm: str = "training.approve_trainingjob") -> Response:
    require_user_permission(request, perm)
    job = _job_for_key(request, job_id)
    try:
        job = action(job)
    except ValueError as exc:
        raise exceptions.ValidationError({"reason": [str(exc)]}) from None
    return Response(_detail(job.pk))


class JobApproveApi(APIView):
    permission_classes = [ManageScope]

    class InputSerializer(JsonInputSerializer):
        confirm_no_decision = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Required (true) when the job's A/B test reached no significant result: the reviewer "
            "confirms 'deploy without a significant result' (recorded in the job's timeline). Without it "
            "such an approval is refused with 409.",
        )

    @extend_schema(request=InputSerializer, responses={200: JobDetailSerializer, 409: CONFLICT_STATUS})
    def post(self, request: Request, job_id: int) -> Response:
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        confirm = payload.validated_data["confirm_no_decision"]
        return _decide(
            request,
            job_id,
            lambda job: services.job_approve(job=job, user=request.user, confirm_no_decision=confirm),
        )


class JobRejectApi(APIView):
    permission_classes = [ManageScope]

    class InputSerializer(JsonInputSerializer):
        reason = serializers.CharField(max_length=2000, help_text="Shown in the job's timeline.")

    @extend_schema(request=InputSerializer, responses={200: JobDetailSerializer, 409: CONFLICT_STATUS})
    def post(self, request: Request, job_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data["reason"]
        return _decide(
            request, job_id, lambda job: services.job_reject(job=job, user=request.user, reason=reason)
        )


class JobCancelApi(APIView):
    permission_classes = [ManageScope]

    @extend_schema(request=None, responses={200: JobDetailSerializer, 409: CONFLICT_STATUS})
    def post(self, request: Request, job_id: int) -> Response:
        # Cancelling is the undo of starting a job, so it needs the trigger permission (as the dashboard).
        return _decide(
            request,
            job_id,
            lambda job: services.job_cancel(job=job, user=request.user),
            perm="training.trigger_trainingjob",
        )


class AssistantShouldRetrainApi(APIView):
    permission_classes = [ReadScope]

    class OutputSerializer(serializers.Serializer):
        assistant = serializers.CharField()
        should_retrain = serializers.BooleanField()
        reasons = serializers.ListField(child=serializers.CharField(), help_text="Worded as the seed does.")
        trigger = serializers.CharField(allow_null=True, help_text="threshold or performance; null if none.")
        metrics = serializers.DictField(
            help_text="feedback_count, success_rate, avg_rating, error_rate, days_since_retrain, "
            "performance_drop and the observation counts behind them (null when unknown)."
        )
        blocked_by = serializers.CharField(allow_null=True, help_text="Why nothing may trigger now.")

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request: Request, slug: str) -> Response:
        from training.policy import should_retrain

        assistant = assistant_for_key(request, slug)
        body = {"assistant": assistant.slug, **should_retrain(assistant).as_dict()}
        return Response(self.OutputSerializer(body).data)


class ActiveJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    trigger = serializers.CharField()


class TrainingLoopSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    active_job = ActiveJobSerializer(allow_null=True)
    total_jobs = serializers.IntegerField()
    jobs_awaiting_approval = serializers.IntegerField()
    deployed_jobs = serializers.IntegerField()
    failed_jobs = serializers.IntegerField()
    last_retrained_at = serializers.DateTimeField(allow_null=True)
    last_deployment_at = serializers.DateTimeField(allow_null=True)
    live_version = serializers.CharField(allow_null=True)


class AssistantHealthSerializer(serializers.Serializer):
    """``training.selectors.training_loop_health``: the seed's trainingLoop block and feedback stats."""

    assistant = serializers.CharField()
    training_loop_ready = serializers.BooleanField()
    training_loop = TrainingLoopSerializer()
    feedback = FeedbackStatsSerializer()
    feedback_since_deployment = FeedbackStatsSerializer()


class HealthOneSerializer(AssistantHealthSerializer):
    status = serializers.ChoiceField(choices=["ok"])


class HealthAllSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])
    assistants = AssistantHealthSerializer(many=True)


class HealthApi(APIView):
    permission_classes = [ReadScope]

    class FilterSerializer(QuerySerializer):
        assistant = QueryTextField()

    @extend_schema(
        parameters=[FilterSerializer],
        responses={
            200: PolymorphicProxySerializer(
                component_name="Health",
                serializers=[HealthOneSerializer, HealthAllSerializer],
                resource_type_field_name=None,
            )
        },
        description="One assistant's block with `?assistant=` or a key bound to one; else every assistant's.",
    )
    def get(self, request: Request) -> Response:
        slug = self.FilterSerializer.parse(request).get("assistant")
        if slug or request_key(request).assistant_id:
            block = selectors.training_loop_health(assistant=assistant_for_key(request, slug))
            return Response(HealthOneSerializer({"status": "ok", **block}).data)
        blocks = selectors.training_loop_health_all()
        return Response(HealthAllSerializer({"status": "ok", "assistants": blocks}).data)


class AssistantRollbackApi(APIView):
    permission_classes = [ManageScope]

    class InputSerializer(JsonInputSerializer):
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)
        from_version = serializers.CharField(
            required=False,
            max_length=200,
            help_text="The live version you are rolling back from. Send it: the rollback then fails "
            "with 409 if the live version changed (e.g. this request is a retry), instead of rolling "
            "forward again. Without it a repeated request undoes the rollback.",
        )

    class OutputSerializer(serializers.Serializer):
        assistant = serializers.CharField()
        live_version = serializers.CharField(help_text="The version live now (the one rolled back to).")
        previous_version = serializers.CharField(allow_null=True)
        reason = serializers.CharField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                description="Nothing to roll back to, or the live version is not `from_version`.",
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        from assistants.services import deployment_rollback

        require_user_permission(request, "assistants.rollback_deployment")
        assistant = assistant_for_key(request, slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = deployment_rollback(
            assistant=assistant,
            expected_live=data.validated_data.get("from_version"),
            user=request.user,
            note=data.validated_data.get("note", ""),
        )
        return Response(
            self.OutputSerializer(
                {
                    "assistant": assistant.slug,
                    "live_version": deployment.version.name,
                    "previous_version": deployment.previous_version.name
                    if deployment.previous_version
                    else None,
                    "reason": deployment.reason,
                    "created_at": deployment.created_at,
                }
            ).data
        )
