"""lgmon settings, all read from the environment (see .env.example).

With no environment set it runs on a SQLite file in WAL mode and kombu's filesystem broker
under ``LGMON_DATA_DIR`` (default ``./var``), so nothing needs to be installed.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ

# Lets admin.ModelAdmin[Model] and friends be subscripted at run time, as the type stubs want.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("LGMON_DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # A stable per-installation key, so sessions survive restarts without any setup.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        from django.core.management.utils import get_random_secret_key

        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "versioning",
    "monitoring",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "lgmon_site.urls"
WSGI_APPLICATION = "lgmon_site.wsgi.application"

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
    },
]

DATABASES: dict[str, dict[str, Any]] = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'lgmon.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web, worker and beat processes read while one of them writes;
            # IMMEDIATE transactions plus the busy timeout make writers queue instead of failing.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # A file, not memory, so that worker processes started by tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "monitoring.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["monitoring.auth.ReadScope"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema (/api/schema/) and its docs pages (/api/docs/, /api/redoc/): readable by
# whoever may read the API. The pages' JavaScript is served from the sidecar app's static
# files, so they work without internet access.
SPECTACULAR_SETTINGS = {
    "TITLE": "lgmon API",
    "VERSION": "1",
    "DESCRIPTION": (
        "Monitoring, versioning and A/B testing for LangGraph applications. Authenticate with "
        "an API key (`Authorization: Bearer lgm_...`) that has the scope the endpoint needs "
        "(ingest, read or manage), or as a signed-in staff user."
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["monitoring.auth.ReadScope"],
    "SERVE_AUTHENTICATION": [
        "monitoring.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "monitoring.models.RunStatus",
        "ExperimentStatusEnum": "versioning.models.Experiment.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # At DEBUG, urllib3 logs every request line, and a Slack webhook's path is its token.
    "loggers": {"urllib3": {"level": "INFO"}},
}

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = Path(env.str("LGMON_BROKER_DIR", default=str(DATA_DIR / "broker")))
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # The filesystem transport has no broadcast support, so no remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Periodic tasks: (beat entry, task, NAME of its LGMON_<NAME>_INTERVAL_S setting, default s).
_PERIODIC = [
    ("apply-rollup-deltas", "monitoring.tasks.apply_rollup_deltas", "ROLLUP", 2.0),
    ("prune-raw-data", "monitoring.tasks.prune_raw_data", "PRUNE", 300.0),
    ("sample-system-metrics", "monitoring.tasks.sample_system_metrics", "SYSTEM_SAMPLE", 30.0),
    ("evaluate-alerts", "monitoring.tasks.evaluate_alerts", "ALERT_EVAL", 30.0),
    ("check-experiment-guardrails", "versioning.tasks.check_guardrails", "GUARDRAIL", 60.0),
    ("deliver-notifications", "monitoring.tasks.deliver_notifications", "DELIVERY", 10.0),
]
LGMON_INTERVALS_S = {
    name: env.float(f"LGMON_{name}_INTERVAL_S", default=default)
    for _, _, name, default in _PERIODIC
}
CELERY_BEAT_SCHEDULE = {
    entry: {"task": task, "schedule": timedelta(seconds=LGMON_INTERVALS_S[name])}
    for entry, task, name, _ in _PERIODIC
}

# --- lgmon ------------------------------------------------------------------------------
# Raw runs and metric points are kept this long; rollups much longer.
LGMON_RAW_RETENTION_DAYS = env.float("LGMON_RAW_RETENTION_DAYS", default=14.0)
LGMON_MINUTE_ROLLUP_RETENTION_DAYS = env.float("LGMON_MINUTE_ROLLUP_RETENTION_DAYS", default=35.0)
LGMON_HOUR_ROLLUP_RETENTION_DAYS = env.float("LGMON_HOUR_ROLLUP_RETENTION_DAYS", default=400.0)
LGMON_PRUNE_BATCH_SIZE = env.int("LGMON_PRUNE_BATCH_SIZE", default=2000)
# Ingest limits.
LGMON_INGEST_MAX_BODY_BYTES = env.int("LGMON_INGEST_MAX_BODY_BYTES", default=8 * 1024 * 1024)
LGMON_INGEST_MAX_GRAPH_RUNS = env.int("LGMON_INGEST_MAX_GRAPH_RUNS", default=1000)
LGMON_INGEST_MAX_NODE_RUNS = env.int("LGMON_INGEST_MAX_NODE_RUNS", default=10000)
LGMON_INGEST_MAX_METRIC_POINTS = env.int("LGMON_INGEST_MAX_METRIC_POINTS", default=5000)
LGMON_INGEST_MAX_CLOCK_SKEW_S = env.float("LGMON_INGEST_MAX_CLOCK_SKEW_S", default=300.0)
# The Django request body cap must not cut ingest bodies short.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, LGMON_INGEST_MAX_BODY_BYTES)
# Prometheus /metrics: open to anyone when public, else to this Bearer token or a read-scope
# API key. Its lgmon_window_* gauges cover the last LGMON_METRICS_WINDOW_S seconds.
LGMON_METRICS_PUBLIC = env.bool("LGMON_METRICS_PUBLIC", default=False)
LGMON_METRICS_TOKEN = env.str("LGMON_METRICS_TOKEN", default="")
LGMON_METRICS_WINDOW_S = env.float("LGMON_METRICS_WINDOW_S", default=300.0)
# Alerting: the evaluation tick, delivery retries, and where alert links point.
LGMON_ALERT_EVAL_INTERVAL_S = LGMON_INTERVALS_S["ALERT_EVAL"]  # ticks are aligned to it
LGMON_DELIVERY_MAX_ATTEMPTS = env.int("LGMON_DELIVERY_MAX_ATTEMPTS", default=10)
LGMON_DELIVERY_TIMEOUT_S = env.float("LGMON_DELIVERY_TIMEOUT_S", default=10.0)
LGMON_PUBLIC_URL = env.str("LGMON_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
# Webhook, Slack and PagerDuty targets on private, loopback or link-local addresses are refused
# unless this is true (an SSRF guard: channel URLs are typed in by users).
LGMON_ALERTS_ALLOW_PRIVATE_TARGETS = env.bool("LGMON_ALERTS_ALLOW_PRIVATE_TARGETS", default=False)
# Email notifications go through Django's mail: EMAIL_URL as in django-environ
# (smtp+tls://user:password@host:587); the default prints mails to the worker's console.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="lgmon@localhost")
