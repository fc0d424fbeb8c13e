"""Device keys and per-device rates on POST /api/v1/telemetry/ingest/, and the ingest-keys/ endpoints.

A keyed device accepts readings only from requests carrying its key (`Authorization: Device <key>`); devices without
a key stay open. Every device has a request rate (INGEST_DEVICE_RATE), counted in the database so that every web
worker shares it. Refusals store nothing and count nothing toward the rate.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from iothub.models import Role
from telemetry.ingest.keys import KEY_PREFIX, ingest_key_create, ingest_key_hash
from telemetry.ingest.services import INSERT_READINGS
from telemetry.models import Device, IngestKey, Telemetry
from tests.conftest import HTTPS, assert_problem, client_for
from tests.factories import DeviceFactory, UserFactory
from tests.telemetry.test_ingest import ago, post, reading, seconds_apart

pytestmark = pytest.mark.django_db


def device_key(key):
    return {"HTTP_AUTHORIZATION": f"Device {key}"}


def assert_key_refused(response, *, stored=0):
    """A 401 problem with the Device challenge, and nothing stored: ``stored`` readings were there before."""
    body = assert_problem(response, 401, "device_key_invalid")
    assert response["WWW-Authenticate"] == 'Device realm="telemetry ingest"'
    assert Telemetry.objects.count() == stored
    return body


def refusals(ingest_key):
    ingest_key.refresh_from_db()
    return ingest_key.refusals


@pytest.fixture
def keyed():
    """A device with a key of its own: (device, ingest_key, key)."""
    device = DeviceFactory()
    ingest_key, key = ingest_key_create(name="boiler key", devices=[device])
    return device, ingest_key, key


@pytest.fixture
def device():
    return DeviceFactory()


class TestKeyedDevices:
    def test_a_reading_with_the_key_is_stored(self, api_client, keyed):
        device, _, key = keyed
        response = post(api_client, reading(device), **device_key(key))
        assert response.status_code == 201, response.content
        assert Telemetry.objects.filter(device=device).count() == 1

    def test_a_reading_without_the_key_is_refused_and_counted(self, api_client, keyed):
        device, ingest_key, _ = keyed
        assert_key_refused(post(api_client, reading(device)))
        assert refusals(ingest_key) == 1
        assert ingest_key.last_refused_at is not None

    @pytest.mark.parametrize(
        "authorization",
        [
            "Device iothub_dk_wrong",
            "Device ",
            "Bearer iothub_dk_wrong",  # a JWT's scheme carries no device key
            "iothub_dk_wrong",
        ],
    )
    def test_a_wrong_key_is_refused(self, api_client, keyed, authorization):
        device, ingest_key, _ = keyed
        assert_key_refused(post(api_client, reading(device), HTTP_AUTHORIZATION=authorization))
        assert refusals(ingest_key) == 1

    def test_the_scheme_is_case_insensitive(self, api_client, keyed):
        device, _, key = keyed
        response = post(api_client, reading(device), HTTP_AUTHORIZATION=f"device {key}")
        assert response.status_code == 201, response.content

    def test_a_key_of_another_device_is_refused(self, api_client, keyed):
        device, _, _ = keyed
        _, other_key = ingest_key_create(name="other", devices=[DeviceFactory()])
        assert_key_refused(post(api_client, reading(device), **device_key(other_key)))

    def test_a_batch_of_a_keyed_device(self, api_client, keyed):
        device, _, key = keyed
        batch = [reading(device, timestamp) for timestamp in seconds_apart(3)]
        assert_key_refused(post(api_client, batch))
        assert post(api_client, batch, **device_key(key)).status_code == 201
        assert Telemetry.objects.count() == 3

    def test_a_mixed_batch_needs_the_key_of_its_keyed_device(self, api_client, keyed, device):
        keyed_device, ingest_key, key = keyed
        batch = [reading(device), reading(keyed_device)]
        assert_key_refused(post(api_client, batch))  # the open device's reading is not stored either
        assert refusals(ingest_key) == 1
        assert post(api_client, batch, **device_key(key)).json() == {"accepted": 2, "merged": 0, "duplicates": 0}

    def test_a_batch_of_devices_with_different_keys_is_refused_whatever_key_it_carries(self, api_client, keyed):
        first, first_key_row, first_key = keyed
        second = DeviceFactory()
        second_key_row, second_key = ingest_key_create(name="second", devices=[second])
        batch = [reading(first), reading(second)]
        for key in (first_key, second_key):
            assert_key_refused(post(api_client, batch, **device_key(key)))
        # Each refusal is counted on the key the request lacked.
        assert (refusals(first_key_row), refusals(second_key_row)) == (1, 1)

    def test_a_gateway_key_shared_by_devices(self, api_client):
        devices = DeviceFactory.create_batch(3)
        _, key = ingest_key_create(name="gateway", devices=devices)
        batch = [reading(device) for device in devices]
        assert post(api_client, batch, **device_key(key)).json() == {"accepted": 3, "merged": 0, "duplicates": 0}
        assert post(api_client, reading(devices[0], ago(seconds=5)), **device_key(key)).status_code == 201
        assert_key_refused(post(api_client, reading(devices[1], ago(seconds=5))), stored=4)

    def test_an_invalid_body_of_a_keyed_device_without_its_key_is_a_401_not_its_problems(self, api_client, keyed):
        # Whoever lacks the key learns nothing of the device from the answer.
        device, ingest_key, _ = keyed
        assert_key_refused(post(api_client, [reading(device, "yesterday")]))
        assert refusals(ingest_key) == 1

    def test_an_invalid_body_with_the_key_lists_its_problems(self, api_client, keyed):
        device, ingest_key, key = keyed
        body = assert_problem(post(api_client, [reading(device, "yesterday")], **device_key(key)), 400, "invalid")
        assert [error["pointer"] for error in body["errors"]] == ["/0/timestamp"]
        assert refusals(ingest_key) == 0

    def test_an_inactive_keyed_device_without_its_key_is_a_401(self, api_client, keyed):
        device, _, key = keyed
        Device.objects.filter(pk=device.pk).update(status="inactive")
        assert_key_refused(post(api_client, reading(device)))
        assert_problem(post(api_client, reading(device), **device_key(key)), 400, "invalid")


class TestOpenDevices:
    def test_a_device_without_a_key_accepts_readings_with_or_without_any_key(self, api_client, device, keyed):
        _, _, key = keyed
        timestamps = seconds_apart(3)
        assert post(api_client, reading(device, timestamps[0])).status_code == 201
        assert post(api_client, reading(device, timestamps[1]), **device_key(key)).status_code == 201
        assert post(api_client, reading(device, timestamps[2]), **device_key("nonsense")).status_code == 201
        assert Telemetry.objects.filter(device=device).count() == 3


def test_the_stored_hash_is_an_hmac_of_the_key_not_the_key(keyed):
    _, ingest_key, key = keyed
    assert key.startswith(KEY_PREFIX)
    assert len(key) == len(KEY_PREFIX) + 43
    stored = bytes(IngestKey.objects.get(pk=ingest_key.pk).key_hash)
    assert stored == ingest_key_hash(key)
    assert len(stored) == 32
    assert key.encode() not in stored


def test_the_hash_depends_on_the_server_secret(settings):
    before = ingest_key_hash("iothub_dk_same")
    settings.DEVICE_KEY_SECRET = "another secret"
    assert ingest_key_hash("iothub_dk_same") != before


class TestKeyEndpoints:
    @pytest.fixture
    def operator(self):
        return client_for(UserFactory(role=Role.OPERATOR))

    def test_creation_shows_the_key_once(self, operator, api_client, device):
        response = operator.post("/api/v1/ingest-keys/", {"name": "roof", "devices": [str(device.pk)]}, format="json")
        assert response.status_code == 201, response.content
        created = response.json()
        key = created.pop("key")
        assert key.startswith(KEY_PREFIX)
        assert created["devices"] == [str(device.pk)]
        assert created["refusals"] == 0
        detail = operator.get(f"/api/v1/ingest-keys/{created['id']}/")
        listing = operator.get("/api/v1/ingest-keys/")
        for later in (detail, listing):
            assert later.status_code == 200
            assert key not in later.content.decode()
            assert "key_hash" not in later.content.decode()
        assert detail.json() == created
        assert post(api_client, reading(device), **device_key(key)).status_code == 201

    def test_rotation_invalidates_the_old_key(self, operator, api_client, keyed):
        device, ingest_key, old_key = keyed
        response = operator.post(f"/api/v1/ingest-keys/{ingest_key.pk}/rotate/")
        assert response.status_code == 200, response.content
        new_key = response.json()["key"]
        assert new_key != old_key
        assert response.json()["rotated_at"] is not None
        assert key_not_in(operator.get(f"/api/v1/ingest-keys/{ingest_key.pk}/"), new_key)
        assert_key_refused(post(api_client, reading(device), **device_key(old_key)))
        assert post(api_client, reading(device), **device_key(new_key)).status_code == 201

    def test_revocation_returns_the_devices_to_open_ingest(self, operator, api_client, keyed):
        device, ingest_key, _ = keyed
        assert operator.delete(f"/api/v1/ingest-keys/{ingest_key.pk}/").status_code == 204
        device.refresh_from_db()
        assert device.ingest_key is None
        assert post(api_client, reading(device)).status_code == 201

    def test_a_device_left_out_of_its_key_returns_to_open_ingest(self, operator, api_client, keyed):
        device, ingest_key, key = keyed
        other = DeviceFactory()
        response = operator.patch(f"/api/v1/ingest-keys/{ingest_key.pk}/", {"devices": [str(other.pk)]}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["devices"] == [str(other.pk)]
        assert "key" not in response.json()
        assert post(api_client, reading(device)).status_code == 201
        assert_key_refused(post(api_client, reading(other)), stored=1)
        assert post(api_client, reading(other), **device_key(key)).status_code == 201

    def test_a_device_moves_from_its_previous_key(self, operator, keyed):
        device, ingest_key, _ = keyed
        response = operator.post("/api/v1/ingest-keys/", {"name": "new", "devices": [str(device.pk)]}, format="json")
        assert response.status_code == 201
        assert operator.get(f"/api/v1/ingest-keys/{ingest_key.pk}/").json()["devices"] == []

    def test_unknown_fields_and_devices_are_refused(self, operator):
        response = operator.post("/api/v1/ingest-keys/", {"name": "x", "key": "mine"}, format="json")
        assert_problem(response, 400, "invalid")
        response = operator.post(
            "/api/v1/ingest-keys/", {"name": "x", "devices": ["6f1c2f7e-3f8a-4d7e-9a43-2b1d0c9e8f10"]}, format="json"
        )
        assert_problem(response, 400, "invalid")
        assert not IngestKey.objects.exists()


def key_not_in(response, key):
    assert response.status_code == 200
    return key not in response.content.decode()


def test_keys_never_reach_the_logs(api_client, keyed, caplog):
    device, _, key = keyed
    with caplog.at_level(logging.DEBUG):
        assert post(api_client, reading(device), **device_key(key)).status_code == 201
        assert_problem(post(api_client, reading(device, ago(seconds=5)), **device_key(key + "x")), 401)
    assert key not in caplog.text
    # The refusal is logged with the device, for operators.
    refusal = [record for record in caplog.records if "no valid device key" in record.getMessage()]
    assert len(refusal) == 1
    assert str(device.pk) in refusal[0].getMessage()


class TestDeviceRate:
    """INGEST_DEVICE_RATE: requests per device per window, shared by every worker (counted in the database)."""

    @pytest.fixture(autouse=True)
    def three_a_minute(self, settings):
        settings.INGEST_DEVICE_RATE = (3, 60)

    def test_a_device_over_its_rate_gets_a_429_and_nothing_is_stored(self, api_client, device):
        timestamps = seconds_apart(5)
        for timestamp in timestamps[:3]:
            assert post(api_client, reading(device, timestamp)).status_code == 201
        response = post(api_client, reading(device, timestamps[3]))
        body = assert_problem(response, 429, "throttled")
        assert str(device.pk) in body["detail"]
        assert 1 <= int(response["Retry-After"]) <= 60
        assert Telemetry.objects.filter(device=device).count() == 3

    def test_other_devices_keep_their_own_rate(self, api_client, device):
        other = DeviceFactory()
        for timestamp in seconds_apart(3):
            assert post(api_client, reading(device, timestamp)).status_code == 201
        assert post(api_client, reading(other)).status_code == 201

    def test_a_batch_counts_once_per_device_and_is_refused_whole(self, api_client, device):
        other = DeviceFactory()
        # One request of 10 readings of one device counts once.
        assert post(api_client, [reading(device, t) for t in seconds_apart(10)]).status_code == 201
        for timestamp in seconds_apart(12)[10:]:
            assert post(api_client, reading(device, timestamp)).status_code == 201
        assert_problem(post(api_client, [reading(other), reading(device, ago(seconds=30))]), 429, "throttled")
        assert not Telemetry.objects.filter(device=other).exists()

    def test_a_new_window_starts_a_new_count(self, api_client, device):
        timestamps = seconds_apart(5)
        for timestamp in timestamps[:3]:
            assert post(api_client, reading(device, timestamp)).status_code == 201
        with connection.cursor() as cursor:  # as if the window had passed
            cursor.execute("UPDATE ingest_request_counts SET window_start = window_start - interval '60 seconds'")
        assert post(api_client, reading(device, timestamps[3])).status_code == 201

    def test_refused_requests_count_nothing(self, api_client, keyed):
        # Someone without the key cannot use up a keyed device's rate; invalid bodies count nothing either.
        device, _, key = keyed
        for _ in range(5):
            assert_key_refused(post(api_client, reading(device)))
        timestamps = seconds_apart(3)
        for timestamp in timestamps:
            assert post(api_client, reading(device, timestamp), **device_key(key)).status_code == 201

    def test_a_deleted_device_takes_its_count_with_it(self, api_client, device):
        assert post(api_client, reading(device)).status_code == 201
        device.delete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM ingest_request_counts")
            assert cursor.fetchone() == (0,)

    def test_the_counters_table_is_unlogged(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT relpersistence FROM pg_class WHERE relname = 'ingest_request_counts'")
            assert cursor.fetchone() == ("u",)


@pytest.mark.django_db(transaction=True)
def test_the_rate_is_shared_by_concurrent_connections(settings):
    # Each thread has its own database connection, as each app server thread does: together they get the rate.
    settings.INGEST_DEVICE_RATE = (5, 60)
    device = DeviceFactory()
    timestamps = seconds_apart(20)

    def send(timestamp):
        try:
            return post(APIClient(**HTTPS), reading(device, timestamp)).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(send, timestamps))
    assert statuses == [201] * 5 + [429] * 15
    assert Telemetry.objects.filter(device=device).count() == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_the_same_devices_do_not_deadlock():
    devices = DeviceFactory.create_batch(6)
    timestamps = seconds_apart(8)

    def send(index):
        order = devices if index % 2 else list(reversed(devices))
        try:
            batch = [reading(device, timestamps[index]) for device in order]
            return post(APIClient(**HTTPS), batch).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(send, range(8))) == [201] * 8


class TestAdmin:
    """Device keys in Django Admin, for an operator (admins have the same pages)."""

    @pytest.fixture
    def operator_admin(self, client):
        client.force_login(UserFactory(role=Role.OPERATOR))
        return client

    def test_a_key_created_in_admin_is_shown_once_and_works(self, operator_admin, api_client, device):
        response = operator_admin.post(
            "/admin/telemetry/ingestkey/add/", {"name": "roof", "devices": [str(device.pk)]}, secure=True
        )
        assert response.status_code == 200, response.content.decode()[-2000:]
        assert "no-store" in response["Cache-Control"]
        ingest_key = IngestKey.objects.get(name="roof")
        (key,) = [word for word in response.content.decode().split("<code>") if word.startswith(KEY_PREFIX)]
        key = key.split("</code>")[0]
        assert bytes(ingest_key.key_hash) == ingest_key_hash(key)
        assert post(api_client, reading(device), **device_key(key)).status_code == 201
        assert_key_refused(post(api_client, reading(device, ago(seconds=5))), stored=1)
        change = operator_admin.get(f"/admin/telemetry/ingestkey/{ingest_key.pk}/change/", secure=True)
        assert change.status_code == 200
        assert key not in change.content.decode()

    def test_rotation_in_admin_shows_the_new_key_and_the_old_one_stops(self, operator_admin, api_client, keyed):
        device, ingest_key, old_key = keyed
        response = operator_admin.post(
            "/admin/telemetry/ingestkey/",
            {"action": "rotate", "_selected_action": [ingest_key.pk]},
            secure=True,
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert old_key not in page
        ingest_key.refresh_from_db()
        (new_key,) = [word.split("</code>")[0] for word in page.split("<code>") if word.startswith(KEY_PREFIX)]
        assert bytes(ingest_key.key_hash) == ingest_key_hash(new_key)
        assert_key_refused(post(api_client, reading(device), **device_key(old_key)))
        assert post(api_client, reading(device), **device_key(new_key)).status_code == 201

    def test_deleting_a_key_in_admin_revokes_it(self, operator_admin, api_client, keyed):
        device, ingest_key, _ = keyed
        response = operator_admin.post(
            f"/admin/telemetry/ingestkey/{ingest_key.pk}/delete/", {"post": "yes"}, secure=True
        )
        assert response.status_code == 302
        assert post(api_client, reading(device)).status_code == 201

    def test_a_viewer_does_not_see_device_keys(self, client, keyed):
        client.force_login(UserFactory(role=Role.VIEWER))
        assert client.get("/admin/telemetry/ingestkey/", secure=True).status_code == 403


def test_the_statement_keeps_its_generic_plan_without_a_key(api_client):
    # A NULL key hash let PostgreSQL's custom plans fold the key check away, look cheaper than the generic plan
    # and be chosen every time: the statement was planned again on every request (-40 % on single readings).
    devices = DeviceFactory.create_batch(2)
    # A fresh statement in this session: PostgreSQL chooses between generic and custom plans from its first
    # executions, which earlier tests on this connection would otherwise have made (batches, other devices).
    with connection.cursor() as cursor:
        INSERT_READINGS.forget(cursor)

    def plans():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = %s",
                [INSERT_READINGS.name],
            )
            return cursor.fetchone() or (0, 0)

    generic_before, custom_before = plans()
    for index, timestamp in enumerate(seconds_apart(12)):
        assert post(api_client, reading(devices[index % 2], timestamp)).status_code == 201
    generic_after, custom_after = plans()
    assert custom_after - custom_before <= 5  # PostgreSQL tries custom plans for the first five executions only
    assert generic_after - generic_before >= 7
