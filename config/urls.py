from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import collectors, health
from config.security import LoginView

urlpatterns = [
    # Operations (docs/OPERATIONS.md): liveness and readiness without a key, metrics for a scraper.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", collectors.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says (the admin, raw API answers).
    # Lazy: a manifest static storage can only name the file once collectstatic has run, not at import.
    path(
        "favicon.ico",
        RedirectView.as_view(url=lazy(static, str)("img/favicon.svg"), permanent=True),
        name="favicon",
    ),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("feedback.api_urls")),
    path("api/v1/", include("abtesting.api_urls")),
    path("api/v1/", include("training.api_urls")),
    path("api/v1/", include("gateway.api_urls")),
    # OpenAI-compatible: point any OpenAI SDK at http://HOST/v1 with an ingest key.
    path("v1/", include("gateway.urls")),
    path("", include("assistants.urls")),
    path("", include("feedback.urls")),
    path("", include("abtesting.urls")),
    path("", include("training.urls")),
    path("", include("gateway.page_urls")),
]

handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
