"""The naive way to accept feedback with DRF, as the yardstick for the product's ingest endpoint.

A ``ModelSerializer`` + ``CreateAPIView``, the same key authentication and scope permission, and none of
the product's work on top (no idempotency, no kind inference, no assistant check): what a first draft
would ship.
"""

from __future__ import annotations

from rest_framework import generics, serializers

from assistants.auth import IngestScope
from feedback.models import Feedback


class BaselineFeedbackSerializer(serializers.ModelSerializer):
    class Meta:
        model = Feedback
        fields = (
            "id",
            "interaction",
            "kind",
            "helpful",
            "rating",
            "accuracy",
            "helpfulness",
            "tone",
            "relevance",
            "completeness",
            "comment",
            "suggestion",
            "corrected_answer",
            "confidence",
            "idempotency_key",
            "created_at",
        )
        read_only_fields = ("id", "created_at")


class BaselineFeedbackCreateApi(generics.CreateAPIView):
    permission_classes = [IngestScope]
    serializer_class = BaselineFeedbackSerializer
    queryset = Feedback.objects.all()

    def perform_create(self, serializer: BaselineFeedbackSerializer) -> None:
        serializer.save(assistant_id=serializer.validated_data["interaction"].assistant_id)
