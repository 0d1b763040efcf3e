"""The product's URLs plus /bench/baseline/feedback, so the product's urlconf carries no bench code."""

from django.urls import path

from bench.baseline import BaselineFeedbackCreateApi
from config.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    path("bench/baseline/feedback", BaselineFeedbackCreateApi.as_view(), name="bench-baseline-feedback"),
    *product_urlpatterns,
]
