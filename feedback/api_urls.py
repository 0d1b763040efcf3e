from django.urls import path

from feedback import api

urlpatterns = [
    path("interactions", api.InteractionLogApi.as_view(), name="feedback-api-interaction-log"),
    path("interactions/<int:pk>", api.InteractionGetApi.as_view(), name="feedback-api-interaction-get"),
    path("feedback", api.FeedbackSubmitApi.as_view(), name="feedback-api-submit"),
    path("feedback/batch", api.FeedbackBatchApi.as_view(), name="feedback-api-batch"),
    path("feedback-prompt", api.FeedbackPromptApi.as_view(), name="feedback-api-prompt"),
    path("assistants/<slug:slug>/stats", api.AssistantStatsApi.as_view(), name="feedback-api-stats"),
]
