"""Production settings: required variables, secure defaults, the driver check and the HTTPS redirect."""

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


def _login_protection_settings(**env):
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.AUTH_THROTTLE_RATE, [str(n) for n in settings.TRUSTED_PROXIES])"
    )
    clean = {key: value for key, value in os.environ.items() if key not in ("AUTH_THROTTLE_RATE", "TRUSTED_PROXIES")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "iothub.settings", **PRODUCTION_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
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
