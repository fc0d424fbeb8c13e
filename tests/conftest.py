"""Shared fixtures. Every test runs against the real PostgreSQL + TimescaleDB cluster that `make test` starts."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from iothub.models import Role
from tests.factories import UserFactory

# Requests arrive as they do behind the TLS proxy; plain HTTP would be redirected.
HTTPS = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "testserver"}


def pytest_configure():
    # Tests don't run collectstatic: serve assets from the apps' folders, without the manifest.
    settings.STATIC_ROOT = tempfile.mkdtemp(prefix="iothub-static-")
    settings.STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.WHITENOISE_USE_FINDERS = True
    # Hashing strength is not under test; PBKDF2's iterations would dominate the suite's run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Stages whose behaviour does not depend on the TimescaleDB edition: `make test` runs them on its first edition
# only (TEST_RUN_ONCE_STAGES=0 on the others; scripts/dev/test.sh).
TESTS = Path(__file__).resolve().parent
RUN_ONCE_PATHS = (
    TESTS / "deploy",  # the container stack and nginx's TLS
    TESTS / "reliability",  # crashes, outages and transport faults of the serving stack
    TESTS / "security" / "test_schema_fuzz.py",  # schemathesis over every operation and role
)


def pytest_report_header(config):
    expected = os.environ.get("TEST_TIMESCALEDB_EDITION")
    return f"TimescaleDB edition: {expected}" if expected else None


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TEST_RUN_ONCE_STAGES", "1") != "0":
        return
    once = [item for item in items if any(Path(item.path).is_relative_to(path) for path in RUN_ONCE_PATHS)]
    if once:
        config.hook.pytest_deselected(items=once)
        kept = [item for item in items if item not in set(once)]
        items[:] = kept


@pytest.fixture(scope="session")
def timescaledb_edition(django_db_setup, django_db_blocker):
    """The edition the test database's TimescaleDB serves: ``"timescale"`` (community/TSL) or ``"apache"``."""
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('timescaledb.license')")
        served = cursor.fetchone()[0]
    expected = os.environ.get("TEST_TIMESCALEDB_EDITION")
    assert expected in (None, served), f"make test started a {expected} cluster, but it serves {served}"
    return served


@pytest.fixture(autouse=True)
def _skip_without_tsl(request):
    if request.node.get_closest_marker("tsl") and request.getfixturevalue("timescaledb_edition") != "timescale":
        pytest.skip("needs TimescaleDB's TSL (community) features; this run serves the Apache-2 edition")


@pytest.fixture
def api_client():
    """An anonymous client speaking HTTPS."""
    return APIClient(**HTTPS)


def connect_separately():
    """A psycopg2 connection of its own to the test database, outside Django's: to see what is committed, or to
    write concurrently."""
    return psycopg2.connect(**connection.get_connection_params())


def env_for_test_database():
    """The environment of a process (manage.py, the app server) that uses the test database instead of the app's."""
    params = connection.get_connection_params()
    url = (
        f"postgres://{quote(params['user'], safe='')}:{quote(params['password'], safe='')}"
        f"@{params['host']}:{params['port']}/{params['dbname']}"
    )
    return {**os.environ, "DATABASE_URL": url}


def manage_on_test_database(*args, timeout=300):
    """``manage.py ARGS`` in a process of its own against the test database; the CompletedProcess, text output."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=TESTS.parent,
        env=env_for_test_database(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def client_for(user):
    """A client authenticated the way real callers are: with an access token from SimpleJWT."""
    client = APIClient(**HTTPS)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    client.user = user
    return client


@pytest.fixture
def admin_user(db):
    return UserFactory(role=Role.ADMIN, username="admin")


@pytest.fixture
def operator_user(db):
    return UserFactory(role=Role.OPERATOR, username="operator")


@pytest.fixture
def viewer_user(db):
    return UserFactory(role=Role.VIEWER, username="viewer")


@pytest.fixture
def admin_client(admin_user):
    return client_for(admin_user)


@pytest.fixture
def operator_client(operator_user):
    return client_for(operator_user)


@pytest.fixture
def viewer_client(viewer_user):
    return client_for(viewer_user)


@pytest.fixture
def role_client(request, db):
    """Parametrize with a role name (or "anonymous") to get a client acting as that role."""
    role = request.param
    if role == "anonymous":
        return APIClient(**HTTPS)
    return client_for(UserFactory(role=role, username=f"{role}-user"))


def assert_problem(response, status, code=None):
    """The response is an RFC 9457 problem document with our members."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "code", "errors"} <= body.keys()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["errors"], list)
    if code is not None:
        assert body["code"] == code, body
    return body
