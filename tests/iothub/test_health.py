import pytest
from django.db import connection

from iothub.api import views
from tests.conftest import assert_problem

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_URL = "/api/v1/health/"


@pytest.fixture(autouse=True)
def _forget_migration_state():
    views._applied_migrations_seen = False
    yield
    views._applied_migrations_seen = False


def test_healthy_with_versions_for_admins(admin_client, timescaledb_edition):
    response = admin_client.get(HEALTH_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["migrations_applied"] is True
    assert body["timescaledb"]["edition"] == timescaledb_edition
    assert body["timescaledb"]["version"].startswith("2.19.")


@pytest.mark.parametrize("role_client", ["anonymous", "operator", "viewer"], indirect=True)
def test_everyone_else_gets_the_status_without_versions(role_client):
    response = role_client.get(HEALTH_URL)
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "migrations_applied": True}


def test_a_bad_token_does_not_matter_to_health(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    response = api_client.get(HEALTH_URL)
    assert response.status_code == 200
    assert "timescaledb" not in response.json()


def test_health_is_exempt_from_the_https_redirect(api_client):
    response = api_client.get(HEALTH_URL, HTTP_X_FORWARDED_PROTO="http")
    assert response.status_code == 200


def test_pending_migrations_are_a_503(api_client):
    # The app's newest migration: an older one alone would not be pending for Django (its successor is applied).
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE id = (SELECT max(id) FROM django_migrations WHERE app = 'iothub')"
            " RETURNING name, applied"
        )
        name, applied = cursor.fetchone()
    try:
        body = assert_problem(api_client.get(HEALTH_URL), 503, "unhealthy")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_migrations (app, name, applied) VALUES ('iothub', %s, %s)", [name, applied]
            )
    assert body["database"] == "ok"
    assert body["migrations_applied"] is False


def test_an_unreachable_database_is_a_503_with_the_same_shape(api_client):
    settings_dict = connection.settings_dict
    port = settings_dict["PORT"]
    connection.close()
    settings_dict["PORT"] = "1"
    try:
        response = api_client.get(HEALTH_URL)
    finally:
        connection.close()
        settings_dict["PORT"] = port
    body = assert_problem(response, 503, "unhealthy")
    assert body["database"] == "unavailable"
    assert "timescaledb" not in body
    assert body["migrations_applied"] is False
