"""Shared fixtures. Every test runs against the real PostgreSQL + TimescaleDB cluster that `make test` starts."""

import tempfile

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


@pytest.fixture(scope="session")
def timescaledb_edition(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(current_setting('timescaledb.license', true), 'apache')")
        return cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def _skip_without_tsl(request):
    if request.node.get_closest_marker("tsl") and request.getfixturevalue("timescaledb_edition") != "timescale":
        pytest.skip("needs TimescaleDB's TSL (community) features; this build is Apache-2 only")


@pytest.fixture
def api_client():
    """An anonymous client speaking HTTPS."""
    return APIClient(**HTTPS)


def connect_separately():
    """A psycopg2 connection of its own to the test database, outside Django's: to see what is committed, or to
    write concurrently."""
    return psycopg2.connect(**connection.get_connection_params())


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
