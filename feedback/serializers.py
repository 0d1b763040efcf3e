"""What feedback's APIs answer: interactions, feedback rows, stats, prompts (also embedded by other APIs)."""

from __future__ import annotations

from rest_framework import serializers

from feedback.models import CATEGORY_FIELDS, Feedback, Interaction, is_success
from feedback.tokens import feedback_token


class InteractionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assistant = serializers.CharField(source="assistant.slug")
    request_id = serializers.CharField()
    model_version = serializers.CharField(source="model_version.name", default=None)
    experiment = serializers.IntegerField(source="experiment_id", allow_null=True)
    arm = serializers.CharField()
    created_at = serializers.DateTimeField()
    feedback_token = serializers.SerializerMethodField(
        help_text="Give it to the page that shows the answer: feedback sent with a publishable (browser) "
        "key must carry it (the widget's data-feedback-token)."
    )

    def get_feedback_token(self, obj: Interaction) -> str:
        return feedback_token(obj.pk)


class FeedbackOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    interaction_id = serializers.IntegerField()
    kind = serializers.CharField()
    helpful = serializers.BooleanField(allow_null=True)
    rating = serializers.IntegerField(allow_null=True)
    success = serializers.SerializerMethodField()
    idempotency_key = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_success(self, obj: Feedback) -> bool:
        return is_success(helpful=obj.helpful, rating=obj.rating)


CategoryRatingsSerializer = type(
    "CategoryRatingsSerializer",
    (serializers.Serializer,),
    {name: serializers.FloatField(allow_null=True) for name in CATEGORY_FIELDS},
)


class FeedbackStatsSerializer(serializers.Serializer):
    """``feedback.selectors.feedback_stats``: rates are null, not 0, when there is nothing to divide by."""

    total_feedback = serializers.IntegerField()
    helpful_rate = serializers.FloatField(allow_null=True)
    avg_rating = serializers.FloatField(allow_null=True)
    rated_count = serializers.IntegerField()
    category_ratings = CategoryRatingsSerializer()
    success_count = serializers.IntegerField()
    signal_count = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    total_interactions = serializers.IntegerField()
    error_count = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True)
    excluded_count = serializers.IntegerField()
    correction_count = serializers.IntegerField()
    counts_by_kind = serializers.DictField(child=serializers.IntegerField())
    since = serializers.CharField(allow_null=True)
    until = serializers.CharField(allow_null=True)


class FeedbackPromptSerializer(serializers.Serializer):
    """What to ask (``feedback.services.FEEDBACK_PROMPTS``)."""

    kind = serializers.ChoiceField(choices=Feedback.Kind.choices)
    question = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField(), required=False)
    scale = serializers.ListField(child=serializers.IntegerField(), required=False)
    categories = serializers.ListField(child=serializers.CharField(), required=False)
