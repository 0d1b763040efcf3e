from django.urls import path

from training import api_comparisons

urlpatterns = [
    path("comparisons", api_comparisons.ComparisonCreateApi.as_view(), name="training-api-comparisons"),
    path(
        "comparisons/<int:job_id>",
        api_comparisons.ComparisonDetailApi.as_view(),
        name="training-api-comparison-detail",
    ),
]
