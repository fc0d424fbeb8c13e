"""Production settings: required variables, secure defaults, the driver check and the HTTPS redirect."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core import checks

from iothub import checks as iothub_checks

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "s" * 50,
    "DATABASE_URL": "postgres://iothub:pw@127.0.0.1:5432/iothub",
    "DJANGO_ALLOWED_HOSTS": "iot.example.com",
}


def _load_settings(env):
    """Import the settings in a fresh interpreter with exactly this environment."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "JWT_"))}
    code = "import django; django.setup(); from django.conf import settings; print(settings.ALLOWED_HOSTS)"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "iothub.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_load_from_the_environment():
    result = _load_settings(PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "iot.example.com" in result.stdout


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_a_missing_required_variable_is_a_clear_error(missing):
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != missing}
    result = _load_settings(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} is not set" in result.stderr


def _settings_value(expression, *, unset, **env):
    """``expression`` printed by a fresh interpreter whose settings load from PRODUCTION_ENV and ``env``, without
    this process's variables whose names start with one of ``unset``."""
    code = f"import django, json; django.setup(); from django.conf import settings; print({expression})"
    clean = {key: value for key, value in os.environ.items() if not key.startswith(unset)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "iothub.settings", **PRODUCTION_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _login_protection_settings(**env):
    return _settings_value(
        "settings.AUTH_THROTTLE_RATE, [str(n) for n in settings.TRUSTED_PROXIES]",
        unset=("AUTH_THROTTLE_RATE", "TRUSTED_PROXIES"),
        **env,
    )


def test_login_protection_settings_read_rates_and_networks():
    result = _login_protection_settings(AUTH_THROTTLE_RATE="7/hour", TRUSTED_PROXIES="10.1.2.3, fd00::/8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(7, 3600) ['10.1.2.3/32', 'fd00::/8']"
    # Empty trusts no proxy (make run).
    result = _login_protection_settings(TRUSTED_PROXIES="")
    assert result.stdout.strip() == "(20, 60) []", result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_THROTTLE_RATE", "20"),
        ("AUTH_THROTTLE_RATE", "0/min"),
        ("AUTH_THROTTLE_RATE", "twenty/min"),
        ("AUTH_THROTTLE_RATE", "20/fortnight"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,nginx"),
    ],
)
def test_malformed_login_protection_settings_are_a_clear_error(name, value):
    result = _login_protection_settings(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name}={value!r}" in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "DJANGO_SECRET_KEY"}
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env, "DJANGO_SECRET_KEY_FILE": str(secret_file), "DJANGO_SECRET_KEY": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file"


def test_debug_off_has_secure_defaults():
    assert settings.DEBUG is False
    assert settings.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert settings.SECURE_SSL_REDIRECT is True
    assert settings.SECURE_HSTS_SECONDS >= 31_536_000
    assert settings.SESSION_COOKIE_SECURE is True
    assert settings.CSRF_COOKIE_SECURE is True
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


@pytest.mark.django_db
def test_plain_http_is_redirected_with_308_keeping_the_method(client):
    response = client.post("/api/v1/users/", data="{}", content_type="application/json")
    assert response.status_code == 308
    assert response["Location"] == "https://testserver/api/v1/users/"


@pytest.mark.django_db
def test_https_responses_carry_hsts(api_client):
    response = api_client.get("/api/v1/health/")
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


def test_the_driver_check_accepts_psycopg2():
    assert iothub_checks.check_database_driver(None) == []
    assert not [error for error in checks.run_checks() if error.id == "iothub.E001"]


def test_the_driver_check_refuses_psycopg3(monkeypatch):
    from django.db import connection

    class Psycopg3:
        __name__ = "psycopg"

    monkeypatch.setattr(connection, "Database", Psycopg3())
    errors = iothub_checks.check_database_driver(None)
    assert [error.id for error in errors] == ["iothub.E001"]
    assert "psycopg2" in errors[0].hint


def _database_options(**env):
    return _settings_value(
        "json.dumps(settings.DATABASES['default']['OPTIONS'], sort_keys=True)", unset=("DB_", "DATABASE_"), **env
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"connect_timeout": 5, "keepalives_idle": 2, "keepalives_count": 3, "tcp_user_timeout": 5000}),
        (
            {"DB_TCP_TIMEOUT": "20", "DB_CONNECT_TIMEOUT": "3"},
            {"connect_timeout": 3, "keepalives_idle": 10, "keepalives_count": 10, "tcp_user_timeout": 20000},
        ),
        # The URL's query string wins over the settings' values (libpq options per deployment).
        (
            {"DATABASE_URL": "postgres://iothub:pw@127.0.0.1:5432/iothub?keepalives_idle=30"},
            {"connect_timeout": 5, "keepalives_idle": 30, "keepalives_count": 3, "tcp_user_timeout": 5000},
        ),
    ],
)
def test_database_connections_are_bounded_by_libpq_options(env, expected):
    """docs/operations.md, "Timeouts": the keepalives and tcp_user_timeout every process's connections get (their
    effect is measured by tests/reliability/test_bounded_waits.py)."""
    result = _database_options(**env)
    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout)
    assert options == {"keepalives": 1, "keepalives_interval": 1, **expected}


def test_db_tcp_timeout_must_be_a_positive_number_of_seconds():
    result = _database_options(DB_TCP_TIMEOUT="0")
    assert result.returncode != 0
    assert "DB_TCP_TIMEOUT=0" in result.stderr
