"""The telemetry schema at the database level: hypertable, keys, constraints, cascade."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from telemetry.models import Device, Telemetry
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_telemetry_is_a_hypertable_with_one_day_chunks():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'telemetry'"
        )
        assert cursor.fetchall() == [("time", timedelta(days=1))]


def test_device_ids_are_generated_by_the_database():
    device = DeviceFactory()
    assert isinstance(device.id, uuid.UUID)
    assert device.id.version == 4
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO devices (name, serial_number, location, status, device_type_id, metadata, updated_at)"
            " VALUES ('raw', 'SN-RAW', '', 'active', %s, '{}', now()) RETURNING id",
            [device.device_type_id],
        )
        assert isinstance(cursor.fetchone()[0], uuid.UUID)


def test_a_reading_is_unique_per_device_and_time():
    device = DeviceFactory()
    Telemetry.objects.create(device=device, time=T0, metrics={"t": 1})
    with pytest.raises(IntegrityError), transaction.atomic():
        Telemetry.objects.create(device=device, time=T0, metrics={"t": 2})


@pytest.mark.parametrize("metrics", ["[1, 2]", '"x"', "3", "null"])
def test_metrics_must_be_a_json_object(metrics):
    device = DeviceFactory()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, %s::jsonb)", [device.id, T0, metrics]
        )


def test_a_reading_of_an_unknown_device_is_refused_at_once():
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO telemetry (device_id, time, metrics) VALUES (%s, %s, '{}')", [uuid.uuid4(), T0])


def test_deleting_a_device_deletes_its_readings_in_the_database():
    doomed, kept = DeviceFactory(), DeviceFactory()
    for device in (doomed, kept):
        Telemetry.objects.bulk_create(
            Telemetry(device=device, time=T0 + timedelta(hours=hour), metrics={"t": hour}) for hour in range(48)
        )
    doomed.delete()
    assert not Telemetry.objects.filter(device_id=doomed.id).exists()
    assert Telemetry.objects.filter(device_id=kept.id).count() == 48


def test_a_device_type_in_use_is_protected():
    device = DeviceFactory()
    with pytest.raises(ProtectedError):
        device.device_type.delete()
    assert Device.objects.filter(pk=device.pk).exists()


@pytest.mark.parametrize(
    "assignment", ["status = 'broken'", "metadata = '[]'::jsonb", "device_type_id = NULL"], ids=str
)
def test_device_columns_are_checked_by_the_database(assignment):
    device = DeviceFactory()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE devices SET {assignment} WHERE id = %s", [device.id])


def test_the_primary_key_is_the_only_index_of_telemetry():
    # Every index costs every insert; (device_id, time) serves every query we make.
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'telemetry'")
        assert [name for (name,) in cursor.fetchall()] == ["telemetry_pkey"]
