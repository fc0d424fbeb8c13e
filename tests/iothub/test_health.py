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


def test_healthy(api_client, timescaledb_edition):
    response = api_client.get(HEALTH_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["migrations_applied"] is True
    assert body["timescaledb"]["edition"] == timescaledb_edition
    assert body["timescaledb"]["version"].startswith("2.19.")


def test_a_bad_token_does_not_matter_to_health(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert api_client.get(HEALTH_URL).status_code == 200


def test_health_is_exempt_from_the_https_redirect(api_client):
    response = api_client.get(HEALTH_URL, HTTP_X_FORWARDED_PROTO="http")
    assert response.status_code == 200


def test_pending_migrations_are_a_503(api_client):
    # The app's latest migration: Django plans nothing for a leaf recorded as applied, whatever precedes it.
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE id = (SELECT max(id) FROM django_migrations WHERE app = 'iothub') "
            "RETURNING name, applied"
        )
        (name, applied) = cursor.fetchone()
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
    assert body["timescaledb"] is None
    assert body["migrations_applied"] is False
