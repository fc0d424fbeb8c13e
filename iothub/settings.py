"""Settings for IoT Hub, read from the environment (see .env.example for every variable).

Secrets may also be given as files: ``NAME_FILE=/path`` is read when ``NAME`` itself is not set.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")


def _required(name, *, default=None):
    """A setting production cannot run without: a clear message instead of a traceback. Empty counts as unset."""
    value = env.str(name, default="")
    if value:
        return value
    file_name = env.str(f"{name}_FILE", default="")
    if file_name:
        return Path(file_name).read_text().strip()
    if default is not None:
        return default
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment (or {name}_FILE to a file holding it); "
        f"see .env.example for what it means."
    )


def _rate(name, *, default):
    """``N/period`` (DRF's syntax: s, sec, second, m, min, minute, h, hour, d, day) as ``(N, seconds)``."""
    text = env.str(name, default=default)
    count, _, period = text.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(period.strip()[:1])
    if not count.strip().isdigit() or int(count) < 1 or seconds is None:
        raise ImproperlyConfigured(f"{name}={text!r} is not a rate like 20/min (N/second|minute|hour|day).")
    return int(count), seconds


def _networks(name, *, default):
    """Comma-separated IP addresses or networks (CIDR); empty means none."""
    text = env.str(name, default=default)
    try:
        return [ipaddress.ip_network(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}={text!r}: {error}.") from None


DEBUG = env.bool("DJANGO_DEBUG", default=False)

# Development conveniences exist only with DEBUG on; production must say everything explicitly.
SECRET_KEY = _required("DJANGO_SECRET_KEY", default="insecure-development-key" if DEBUG else None)
ALLOWED_HOSTS = [
    host.strip()
    for host in _required("DJANGO_ALLOWED_HOSTS", default="localhost,127.0.0.1" if DEBUG else None).split(",")
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "iothub.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    "iothub",
    "telemetry",
    "rules",
]

MIDDLEWARE = [
    "iothub.middleware.SecurityMiddleware",
    # Above the ingest fast path so its responses get the header too; it only sets a response header.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # POSTs of readings stop here: the middleware below has nothing to do for them (see its docstring).
    "telemetry.ingest.middleware.IngestFastPathMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "iothub.middleware.ApiProblemMiddleware",
]

ROOT_URLCONF = "iothub.urls"
WSGI_APPLICATION = "iothub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# psycopg2 with persistent connections is the connection pool (see iothub.checks for why not psycopg 3).
DATABASES = {"default": env.db_url_config(_required("DATABASE_URL"))}
DATABASES["default"].update(
    {
        "CONN_MAX_AGE": env.int("DB_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
    }
)
# Bounded waits on the database (docs/operations.md, "Timeouts"); DATABASE_URL's query string may override these.
# A connection that goes DB_TCP_TIMEOUT seconds without a sign of life from the database host — data left
# unacknowledged (tcp_user_timeout), or keepalive probes unanswered while a query runs — is broken: its query fails
# (a 503) instead of waiting for the kernel's TCP give-up (~15 min) or forever. A busy database still answers probes,
# so long statements are not cut by this.
DB_CONNECT_TIMEOUT = env.int("DB_CONNECT_TIMEOUT", default=5)
DB_TCP_TIMEOUT = env.int("DB_TCP_TIMEOUT", default=5)
if DB_TCP_TIMEOUT < 1:
    raise ImproperlyConfigured(f"DB_TCP_TIMEOUT={DB_TCP_TIMEOUT}: give the seconds, at least 1.")
_keepalive_idle = max(1, DB_TCP_TIMEOUT // 2)
DATABASES["default"]["OPTIONS"] = {
    "connect_timeout": DB_CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": _keepalive_idle,
    "keepalives_interval": 1,
    # Where tcp_user_timeout is not supported, idle + count x interval gives about the same bound.
    "keepalives_count": max(1, DB_TCP_TIMEOUT - _keepalive_idle),
    "tcp_user_timeout": DB_TCP_TIMEOUT * 1000,
    **DATABASES["default"].get("OPTIONS", {}),
}
# Seconds one SQL statement of a web request may run (iothub/wsgi.py sets it on the web server's connections; 0: no
# limit). Commands (migrate, refresh_aggregates) and the worker, whose statements may rightly run long, have none.
DB_STATEMENT_TIMEOUT = env.int("DB_STATEMENT_TIMEOUT", default=10)
# An optional streaming replica for telemetry reads (iothub/replica.py, docs/scaling.md): connected like the primary.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    _replica = env.db_url_config(DATABASE_REPLICA_URL)
    DATABASES["replica"] = {
        **DATABASES["default"],
        **_replica,
        "OPTIONS": {**DATABASES["default"]["OPTIONS"], **_replica.get("OPTIONS", {})},
        # A test run uses the primary's test database for it: a hot standby can't create one.
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["iothub.replica.ReadReplicaRouter"]
# Seconds a process sends telemetry reads to the primary after the replica failed to answer, before trying it again.
DB_REPLICA_RETRY_SECONDS = env.int("DB_REPLICA_RETRY_SECONDS", default=30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One place where a DBA reads every schema change in order.
MIGRATION_MODULES = {
    "iothub": "migrations.iothub",
    "telemetry": "migrations.telemetry",
    "rules": "migrations.rules",
}

AUTH_USER_MODEL = "iothub.User"
# Django's, behind the brute-force protection every password login goes through (Admin and the token endpoint).
AUTHENTICATION_BACKENDS = ["iothub.login_protection.ProtectedModelBackend"]
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
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Behind the TLS proxy (nginx in compose) or the app server's own TLS (`make run`).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Container healthchecks probe plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# The ingest limit; the JSON parser enforces the same bound for every other endpoint.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["iothub.api.permissions.AdminOnly"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["iothub.api.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "iothub.api.negotiation.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "iothub.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "iothub.api.filters.FilterBackend",
        "iothub.api.filters.SearchFilter",
        "iothub.api.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "iothub.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "iothub.api.exception_handler.problem_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNICODE_JSON": True,
    "COERCE_DECIMAL_TO_STRING": False,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=15),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=1),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": _required("JWT_SIGNING_KEY", default=SECRET_KEY),
    "TOKEN_OBTAIN_SERIALIZER": "iothub.api.serializers.TokenObtainPairSerializer",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "IoT Hub API",
    "DESCRIPTION": "Devices, telemetry ingest and queries, rules, events and notifications.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Served from our own static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "deviceKey": {
                "type": "http",
                "scheme": "Device",
                "description": "A device key (telemetry ingest only): `Authorization: Device <key>`.",
            }
        }
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "iothub.api.schema.markdown_descriptions",
    ],
}

# Brute-force protection of every login path (Admin, auth/token/, auth/token/refresh/); see docs/reliability.md.
# Failed logins to one account from one client address before that pair is locked out, within the window.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
# Failed logins and refreshes from one client address, whatever the username: (N, seconds) from N/period. The
# address then waits one period.
AUTH_THROTTLE_RATE = _rate("AUTH_THROTTLE_RATE", default="20/min")
# Peers whose X-Forwarded-For names the client (iothub/client_address.py): loopback and the private networks, where
# the proxy of compose, the benchmarks and the tests sits. A server that clients reach without the proxy must not
# trust their network (`make run` sets it empty).
TRUSTED_PROXIES = _networks(
    "TRUSTED_PROXIES", default="127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
)

# Telemetry retention and compression (days); see docs/operations.md.
TELEMETRY_RETENTION_DAYS = env.int("TELEMETRY_RETENTION_DAYS", default=90)
TELEMETRY_COMPRESS_AFTER_DAYS = env.int("TELEMETRY_COMPRESS_AFTER_DAYS", default=7)
# How long the hourly and daily aggregates outlive the raw readings; the 1-minute one follows raw retention.
TELEMETRY_AGGREGATE_RETENTION_DAYS = env.int("TELEMETRY_AGGREGATE_RETENTION_DAYS", default=730)

# Ingest access; see docs/operations.md ("Device keys and ingest limits").
# Device keys are stored as HMAC-SHA256 keyed with this secret (default: the Django secret key); changing it
# invalidates every device key.
DEVICE_KEY_SECRET = _required("DEVICE_KEY_SECRET", default=SECRET_KEY)
# Ingest requests per device: (N, seconds) from N/period, counted per device in fixed windows shared by every web
# worker (a batch counts once for each device it holds). Devices send about one reading a second.
INGEST_DEVICE_RATE = _rate("INGEST_DEVICE_RATE", default="10/s")

# Notification delivery; see docs/rules.md.
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", default=5)
# Seconds a notification may stay `sending` before the worker that claimed it counts as dead and the row is tried
# again: far above one delivery's worst case (EMAIL_TIMEOUT, the webhook's 5 s timeout).
NOTIFICATION_STALLED_AFTER = env.int("NOTIFICATION_STALLED_AFTER", default=300)
# Webhook notifications are recorded but only sent when this is on.
NOTIFICATION_WEBHOOKS_ENABLED = env.bool("NOTIFICATION_WEBHOOKS_ENABLED", default=False)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="iothub@localhost")
# Seconds an SMTP conversation may take before the delivery counts as failed.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=5)

# How often the worker evaluates no-data rules (seconds): an event opens at most this long after the silence
# reaches the rule's no_data_seconds. See docs/rules.md, "No-data rules".
NO_DATA_EVALUATION_SECONDS = env.int("NO_DATA_EVALUATION_SECONDS", default=30)

# The worker's fallback poll when no NOTIFY arrives (seconds).
WORKER_POLL_INTERVAL = env.float("WORKER_POLL_INTERVAL", default=30)

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
