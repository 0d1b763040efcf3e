"""Settings, all driven by the environment (see README "Configuration").

Over 400 lines because every setting is read from the environment here, each with the reason for
its default; splitting settings across modules would hide which variables exist.

The embedded default needs nothing: SQLite in ``var/``, django-q2 on the ORM broker, a generated secret
key kept in ``var/secret_key``, the local model. Set ``DATABASE_URL``, ``REDIS_URL`` and
``OPENAI_BASE_URL``/``OPENAI_API_KEY`` to move to PostgreSQL, Redis and a hosted provider.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config import logging as log_formats
from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TRAINLOOP_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")


MIN_SECRET_KEY_LENGTH = 50  # what `check --deploy` (security.W009) asks for


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if DATABASE_URL and len(key) < MIN_SECRET_KEY_LENGTH:
        # An external database means a real deployment: several hosts must share one key, and a short
        # one signs sessions and password-reset links that can be forged by guessing it.
        raise ImproperlyConfigured(
            f"SECRET_KEY is required when DATABASE_URL is set, with at least {MIN_SECRET_KEY_LENGTH} "
            f"characters (this one has {len(key)}): generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    if key:
        return key
    # Embedded default: generate once and keep it, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_htmx",
    "template_partials",
    "axes",
    # Connects the django-q2 signals that carry request ids into tasks and time them (config/queue.py).
    "config.apps.ObservabilityConfig",
    # Our apps, lowest layer first (docs/ARCHITECTURE.md: imports only point down).
    "dashboard",
    "assistants",
    "feedback",
    "abtesting",
    "training",
    "notifications",
    "gateway",
    # After training, whose `qcluster` command replaces django-q2's (the first app listed wins).
    "django_q",
]

MIDDLEWARE = [
    # First and (nearly) last, as django-prometheus asks: request counts and latency by view and status.
    "config.metrics.PrometheusBeforeMiddleware",
    # Before anything that may answer, so every answer carries X-Request-ID and every line its id.
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "assistants.cors.ApiKeyCorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.middleware.RefuseNulInInputMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.middleware.HtmxLoginRedirectMiddleware",
    "csp.middleware.CSPMiddleware",
    "dashboard.middleware.NoStoreMiddleware",
    # Inside django-axes' middleware, so it counts the lockout page axes answers with, not the login form.
    "config.metrics.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses to even check the password of a locked-out username or address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Failed logins (dashboard and admin share one login): after AXES_FAILURE_LIMIT failures for one
# username, or from one client address, that username or address may not log in for AXES_COOLOFF_TIME
# (each counted on its own, so guessing many passwords for one user and one password for many users
# are both stopped). Attempts are stored in the database, so every web process counts together.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"
# Behind a reverse proxy every request comes from the proxy's address: count the client address the
# proxy appends to X-Forwarded-For instead (TRUSTED_PROXY_COUNT proxies in front of the app).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"

# HTTPS deployments (see docs/DEPLOY.md): HTTPS=True turns every setting below on; each can be set alone.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)


def _proxy_ssl_header() -> tuple[str, str] | None:
    # e.g. SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto:https -- only behind a proxy that always sets it.
    raw = env_str("SECURE_PROXY_SSL_HEADER").strip()
    if not raw:
        return None
    header, sep, value = raw.partition(":")
    if not sep or not header.strip() or not value.strip():
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER={raw!r}: write Header-Name:value, e.g. X-Forwarded-Proto:https."
        )
    return "HTTP_" + header.strip().upper().replace("-", "_"), value.strip()


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header()

# Dashboard pages load only our own scripts, styles and images (htmx and Chart.js are vendored, no
# template has an inline script or style), so an injected <script> or on* attribute cannot run.
# /api/docs/ is left out: Swagger UI's page carries an inline script and style.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/docs/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]


def _databases() -> dict:
    if DATABASE_URL:
        db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
        if db["ENGINE"] == "django.db.backends.postgresql":
            db.setdefault("TEST", {})["NAME"] = env_str("TEST_DATABASE_NAME", "test_trainloop")
        return {"default": db}
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            # Reusing the connection skips re-running the PRAGMAs and a WAL checkpoint per request,
            # which cost as much as the insert itself on the ingest path (bench/ingest.py).
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
            "OPTIONS": {
                # WAL lets the web server read while the worker writes; IMMEDIATE takes the write lock
                # at BEGIN so two writers queue on the busy timeout instead of failing mid-transaction.
                # A checkpoint (copying the WAL back, with two fsyncs) runs inside some writer's commit,
                # holding the write lock: every 10,000 pages (~40 MB of WAL) instead of SQLite's 1,000
                # keeps ingest from stalling on it ten times as often (bench/ingest.py: batches ~1.3x).
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
            # A file, not :memory:, so a real qcluster process in the tests sees the same database.
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
        "figures": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "figures",
        },
    }
else:
    CACHES = {
        # Per-process cache (rate limits do not use it: see RATE_COUNTER_STORE below).
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # Dashboard aggregates, computed by the worker every minute and read by the web processes: it
        # must be shared between processes, so it lives in files next to the database.
        "figures": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache" / "figures"),
        },
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve vendored assets straight from static/ too, so a fresh clone works before collectstatic.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The largest request body (bytes), for the API and forms alike. The documented largest request -- a
# 1,000-item feedback batch whose comments have 10,000 characters each -- is ~10.4 MB of JSON; 16 MiB
# takes it with room for the other fields. Larger bodies get a JSON 413 naming this limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 16 * 1024 * 1024)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard-home"
LOGOUT_REDIRECT_URL = "login"


def _throttle_rate(name: str = "API_THROTTLE_RATE", default: str = "6000/minute") -> str:
    # DRF parses the rate on every request, so a bad value would pass startup and then fail every call.
    rate = env_str(name, default).strip()
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", rate):
        raise ImproperlyConfigured(
            f"{name}={rate!r} is not a rate: write requests/period, e.g. {default} "
            "(period: second, minute, hour or day)."
        )
    return rate


# Rate counters must be shared by all web processes and atomic (assistants/throttling.py): Redis when
# there is one, else a locked counter file next to the database.
RATE_COUNTER_STORE = "cache" if REDIS_URL else "file"
RATE_COUNTER_FILE = VAR_DIR / "rate-counters"
# Publishable (browser) keys sit in page source, so besides the per-key rate their feedback is limited
# per browser origin (requests without an Origin header, e.g. from curl, share one count) and per
# customer (the interaction's user ref; per interaction when it has none). Feedback items count one
# each (a batch of 100 counts 100), and so does each feedback-prompt question.
PUBLISHABLE_ORIGIN_RATE = _throttle_rate("PUBLISHABLE_ORIGIN_RATE", "600/minute")
PUBLISHABLE_USER_RATE = _throttle_rate("PUBLISHABLE_USER_RATE", "30/minute")


REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["assistants.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["assistants.auth.HasApiKey"],
    "DEFAULT_THROTTLE_CLASSES": ["assistants.auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": _throttle_rate()},
    "DEFAULT_SCHEMA_CLASS": "assistants.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["assistants.api_parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "assistants.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Training loop API",
    "DESCRIPTION": "Log interactions, send feedback, route traffic, and drive training jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The chart JSON's enums (dashboard/charts.py), named so no other "type" field can collide with them.
    "ENUM_NAME_OVERRIDES": {
        "ChartTypeEnum": "dashboard.charts.CHART_TYPES",
        "ChartIndexAxisEnum": "dashboard.charts.INDEX_AXES",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "assistants.schema.apply_serializer_rules",
    ],
}

# Email: the console backend (messages printed by the process that sends them) until EMAIL_HOST is set.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one of them to False.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "trainloop@localhost")
# Links in emails and webhooks are absolute: where reviewers reach this site. Unset, the address `start`
# serves on: `start` passes the port it serves (`--port`, else PORT) to its web server and worker, which
# sends the notifications.
SITE_URL = (env_str("SITE_URL") or f"http://127.0.0.1:{env_int('PORT', 8000)}").rstrip("/")
if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", SITE_URL):
    raise ImproperlyConfigured(f"SITE_URL={SITE_URL!r} is not a URL: write e.g. https://loop.example.com")

OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
# Seconds per provider request (for a stream: per wait for its next piece); the gateway's stream lease
# is derived from it (gateway/services.py).
OPENAI_TIMEOUT = env_int("OPENAI_TIMEOUT", 30)

# Training jobs may run this long inside a worker; django-q2's task timeout must exceed the longest
# policy training_timeout, and retry must exceed timeout (django-q2 requirement).
TRAINING_TASK_TIMEOUT = env_int("TRAINING_TASK_TIMEOUT", 3 * 3600)
# Fine-tuning jobs running at once on one provider (OPENAI_BASE_URL): a comparison's candidates and single
# jobs together; the rest wait for a slot (training/trainers/slots.py).
TRAINING_PROVIDER_CONCURRENCY = env_int("TRAINING_PROVIDER_CONCURRENCY", 2)

# Retrain conditions written in Python, for what the admin's custom conditions cannot express: dotted
# paths of callables hook(assistant, policy, stats) -> list of reasons; any reason starts a retrain
# (training/conditions.py, docs/ARCHITECTURE.md). Comma-separated in the environment.
RETRAIN_CONDITION_HOOKS = env_list("RETRAIN_CONDITION_HOOKS", [])

Q_CLUSTER = {
    # Clusters sharing one Redis must have different names, or they take each other's tasks.
    "name": env_str("Q_CLUSTER_NAME", "trainloop"),
    "workers": env_int("Q_WORKERS", 2),
    "timeout": TRAINING_TASK_TIMEOUT,
    "retry": TRAINING_TASK_TIMEOUT + 600,
    "max_attempts": 3,
    "catch_up": False,
    "label": "Task queue",
    "sync": env_bool("Q_SYNC", False),
    "poll": 1,
    # Successful task results kept (the oldest are deleted beyond it); 0 keeps all. Failures are kept.
    "save_limit": env_int("Q_SAVE_LIMIT", 250),
}
# `manage.py qcluster` (training/management/commands/qcluster.py) lets running tasks finish this many
# seconds after SIGTERM/SIGINT, then stops them: the whole stop stays within 10 s (systemd's default
# TimeoutStopSec is 90). An interrupted training stage is resumed by the watchdog.
Q_STOP_GRACE = env_int("Q_STOP_GRACE", 5)
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Logs (docs/OPERATIONS.md): one line per event on stderr, for web, worker and commands alike, each
# carrying the request id and the job, experiment or task it concerns (config/logging.py). LOG_FORMAT=json
# writes one JSON object per line for a log collector; the default is readable text.
LOG_FORMAT = env_str("LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in log_formats.FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use text or json.")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL.")
LOGGING = log_formats.logging_config(fmt=LOG_FORMAT, level=LOG_LEVEL)

# Prometheus metrics at /metrics (config/collectors.py): for a scraper that sends
# `Authorization: Bearer $METRICS_TOKEN`, or from an address in METRICS_ALLOW (comma-separated addresses
# or networks, e.g. 10.0.0.0/8; the client address as config.security.client_ip sees it). With neither
# set, /metrics does not exist (404).
MIN_METRICS_TOKEN_LENGTH = 16
METRICS_TOKEN = env_str("METRICS_TOKEN").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < MIN_METRICS_TOKEN_LENGTH:
    raise ImproperlyConfigured(
        f"METRICS_TOKEN has {len(METRICS_TOKEN)} characters; use at least {MIN_METRICS_TOKEN_LENGTH}: "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
    )


def _networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an address or network (write e.g. 10.0.0.5 or 10.0.0.0/8)."
            ) from None
    return networks


METRICS_ALLOW = _networks("METRICS_ALLOW")
# Probes and scrapers inside the network talk plain HTTP to the app, not through the HTTPS proxy: with
# SECURE_SSL_REDIRECT their requests would be redirected instead of answered.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
