"""REST endpoints for training datasets: build one, list, read, download a split (thin: the pipeline acts)."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assistants.api_pagination import ListPagination, paginated_response
from assistants.auth import ManageScope, ReadScope, assistant_for_key, request_key
from assistants.serializers import JsonInputSerializer, QueryChoiceField, QuerySerializer, QueryTextField
from training import selectors
from training.models import TrainingDataset
from training.pipeline import FORMATS, dataset_build
from training.pipeline.erasure import dataset_ready
from training.pipeline.storage import iter_json_array


class DatasetOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assistant = serializers.CharField(source="assistant.slug")
    format = serializers.CharField()
    is_valid = serializers.BooleanField()
    validation_errors = serializers.JSONField()
    train_count = serializers.IntegerField()
    validation_count = serializers.IntegerField()
    train_sha256 = serializers.CharField()
    validation_sha256 = serializers.CharField()
    stats = serializers.JSONField()
    options = serializers.JSONField()
    created_at = serializers.DateTimeField()
    erasure_marked_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Set: an erased customer is in its files until it is rebuilt (before any use).",
    )
    erasure_rebuilt_at = serializers.DateTimeField(allow_null=True)
    downloads = serializers.SerializerMethodField()

    def get_downloads(self, obj: TrainingDataset) -> dict[str, str]:
        if obj.retention_expired_at is not None:
            return {}  # its files were deleted by retention
        url = reverse("training-api-dataset-download", args=[obj.pk])
        out = {"train": f"{url}?split=train"}
        if obj.validation_file:
            out["validation"] = f"{url}?split=validation"
        return out


class DatasetOptionsSerializer(JsonInputSerializer):
    """The pipeline's options (``training.pipeline.DatasetOptions``); unknown names are refused."""

    # Documented as closed: a typo in an option name is an error, not a silently ignored filter.
    openapi_rules = {"additionalProperties": False}

    min_rating = serializers.IntegerField(required=False, min_value=1, max_value=5)
    require_helpful = serializers.BooleanField(required=False)
    min_confidence = serializers.FloatField(required=False, min_value=0, max_value=1)
    include_negative = serializers.BooleanField(required=False)
    deduplicate = serializers.BooleanField(required=False)
    similarity_threshold = serializers.FloatField(required=False, min_value=0.01, max_value=1)
    max_examples = serializers.IntegerField(required=False, min_value=0, help_text="0: no limit.")
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    system_prompt = serializers.CharField(required=False, allow_blank=True)
    validation_share = serializers.FloatField(required=False, min_value=0, max_value=0.99)
    seed = serializers.IntegerField(required=False)
    base_model = serializers.CharField(required=False, max_length=200)
    redact = serializers.BooleanField(
        required=False, help_text="Redact personal data (always on when the policy requires it)."
    )


@extend_schema_field(DatasetOptionsSerializer)
class DatasetOptionsField(serializers.DictField):
    """Pipeline options as sent: documented as DatasetOptions, validated by whoever uses them."""


def _dataset_for_key(request: Request, pk: int) -> TrainingDataset:
    dataset = selectors.dataset_get(dataset_id=pk)
    # A key bound to another assistant gets the same 404 as a missing id: no probing of other tenants.
    if dataset is None or not request_key(request).allows_assistant(dataset.assistant):
        raise exceptions.NotFound(f"No dataset {pk}.")
    return dataset


class DatasetCreateApi(APIView):
    permission_classes = [ManageScope]

    OptionsSerializer = DatasetOptionsSerializer

    class InputSerializer(JsonInputSerializer):
        assistant = serializers.SlugField(required=False, help_text="Optional when the key is bound to one.")
        format = serializers.ChoiceField(choices=list(FORMATS), default="chat_completion")
        options = DatasetOptionsField(
            required=False, default=dict, help_text="Overrides of the assistant's policy."
        )
        feedback_ids = serializers.ListField(
            # max_value: the primary key's range; a larger number is a typo, not a row (and a 500 on SQLite).
            child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
            required=False,
            allow_null=True,
        )

        def validate_options(self, value):
            unknown = set(value) - set(DatasetCreateApi.OptionsSerializer().fields)
            if unknown:
                raise serializers.ValidationError(f"Unknown option(s): {', '.join(sorted(unknown))}.")
            options = DatasetCreateApi.OptionsSerializer(data=value)
            options.is_valid(raise_exception=True)
            return options.validated_data

    @extend_schema(request=InputSerializer, responses={201: DatasetOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        assistant = assistant_for_key(request, v.get("assistant"))
        dataset = dataset_build(
            assistant=assistant, format=v["format"], options=v["options"], feedback_ids=v.get("feedback_ids")
        )
        return Response(DatasetOutputSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetPagination(ListPagination):
    # The model's order: newest first, the id breaking ties.
    ordering = ("-created_at", "-id")


class DatasetListApi(APIView):
    permission_classes = [ReadScope]
    # `limit` (rows per page) and `cursor` are the paginator's parameters.
    pagination_class = DatasetPagination

    class FilterSerializer(QuerySerializer):
        assistant = QueryTextField()

    @extend_schema(parameters=[FilterSerializer], responses={200: DatasetOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        f = self.FilterSerializer.parse(request)
        slug = f.get("assistant")
        assistant = (
            assistant_for_key(request, slug)
            if slug or request_key(request).assistant_id is not None
            else None
        )
        datasets = selectors.dataset_list(assistant=assistant)
        return paginated_response(self, request, datasets, DatasetOutputSerializer)


class DatasetCollectionApi(DatasetListApi, DatasetCreateApi):
    """One URL, two operations: GET lists (read scope), POST builds (manage scope)."""

    def get_permissions(self):
        owner = DatasetCreateApi if self.request.method == "POST" else DatasetListApi
        return [permission() for permission in owner.permission_classes]


class DatasetDetailApi(APIView):
    permission_classes = [ReadScope]

    @extend_schema(responses={200: DatasetOutputSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(DatasetOutputSerializer(_dataset_for_key(request, pk)).data)


class DatasetDownloadApi(APIView):
    permission_classes = [ReadScope]

    class FilterSerializer(QuerySerializer):
        split = QueryChoiceField(
            choices=["train", "validation"],
            error_messages={"invalid_choice": "Use split=train or split=validation."},
        )

        def get_fields(self):
            fields = super().get_fields()
            # `as` is a Python keyword: the field is named here rather than declared in the class body.
            fields["as"] = QueryChoiceField(
                choices=["json", "jsonl"],
                error_messages={
                    "invalid_choice": "Use as=jsonl (one example a line) or as=json (one array)."
                },
            )
            return fields

    @extend_schema(
        parameters=[FilterSerializer],
        responses={
            (200, "application/jsonl"): OpenApiResponse(
                OpenApiTypes.BINARY, description="as=jsonl: one a line."
            ),
            (200, "application/json"): OpenApiResponse(
                {"type": "array", "items": {"type": "object"}}, description="as=json: one array."
            ),
        },
    )
    def get(self, request: Request, pk: int):
        dataset = _dataset_for_key(request, pk)
        f = self.FilterSerializer.parse(request)
        split, as_ = f.get("split", "train"), f.get("as", "jsonl")
        # A dataset an erasure marked is rebuilt without the erased customers before it is served.
        dataset = dataset_ready(dataset)
        if dataset.retention_expired_at is not None:
            raise exceptions.NotFound(
                f"The files of dataset {pk} were deleted on {dataset.retention_expired_at:%Y-%m-%d} by the "
                "retention policy (retention_days); build a new dataset (POST /api/v1/datasets)."
            )
        path = dataset.train_file if split == "train" else dataset.validation_file
        if not path:
            raise exceptions.NotFound(
                f"Dataset {pk} has no {split} split (it is empty: validation_share was 0 "
                "or there were too few examples)."
            )
        # The row outlives its file when storage was cleaned up or moved: say so instead of a 500.
        if not default_storage.exists(path):
            raise exceptions.NotFound(
                f"The {split} file of dataset {pk} is missing from storage; build the dataset again "
                "(POST /api/v1/datasets)."
            )
        filename = f"dataset-{pk}-{split}.{as_}"
        if as_ == "json":
            response = StreamingHttpResponse(iter_json_array(path), content_type="application/json")
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        return FileResponse(
            default_storage.open(path, "rb"),
            as_attachment=True,
            filename=filename,
            content_type="application/jsonl",
        )
