"""The read-only database role, as a dashboard or a DBA uses it: a real login to the test database, on both
TimescaleDB editions (the Apache edition's aggregate views read the rollups through telemetry_rollup.watermark())."""

from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from django.core.management import call_command
from django.db import connection

from iothub import readonly_role
from telemetry import timescale
from tests.factories import DeviceFactory, RuleFactory, insert_readings

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "read-only-secret-42"
ROLE = "iothub_readonly_test"  # a name of its own: roles are cluster-wide, make run's cluster may have the real one
NOT_READABLE = ("users", "notification_channels", "notifications", "rule_channels", "token_blacklist_outstandingtoken")


@pytest.fixture
def readonly():
    """``connect()`` opens a session as the read-only role; the role is dropped afterwards."""
    readonly_role.ensure(PASSWORD, role=ROLE)
    sessions = []

    def connect(password=PASSWORD):
        params = {**connection.get_connection_params(), "user": ROLE, "password": password}
        session = psycopg2.connect(**params)
        session.autocommit = True
        sessions.append(session)
        return session

    yield connect
    for session in sessions:
        session.close()
    readonly_role.drop(ROLE)


def rows(session, query):
    with session.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def test_it_reads_telemetry_aggregates_devices_rules_and_events(readonly):
    device = DeviceFactory()
    RuleFactory(threshold=30)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    insert_readings(device, [(now - timedelta(hours=2), {"temperature": 31}), (now, {"temperature": 20})])
    timescale.refresh_aggregates(**timescale.configured())
    session = readonly()
    for name in readonly_role.READABLE:
        rows(session, f"SELECT * FROM {name} LIMIT 1")
    counts = rows(session, f"SELECT sum(count) FROM telemetry_1h WHERE device_id = '{device.pk}'")
    assert counts == [(2,)]
    assert rows(session, "SELECT count(*) FROM events") == [(1,)]


@pytest.mark.parametrize("table", NOT_READABLE)
def test_it_reads_nothing_else(readonly, table):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), readonly().cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} LIMIT 1")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO telemetry (device_id, time, metrics) SELECT id, now(), '{}' FROM devices LIMIT 1",
        "UPDATE devices SET name = 'x'",
        "DELETE FROM events",
        "CREATE TABLE mine (id int)",
    ],
)
def test_it_writes_nothing(readonly, statement):
    DeviceFactory()
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), readonly().cursor() as cursor:
        cursor.execute(statement)


def test_without_a_password_nobody_logs_in_as_it(readonly):
    readonly()  # with the password: it logs in
    readonly_role.ensure(None, role=ROLE)
    with pytest.raises(psycopg2.OperationalError, match=r"not permitted to log in|password authentication failed"):
        readonly()


def test_the_command_takes_the_password_from_the_environment(monkeypatch, readonly, capsys):
    monkeypatch.setenv("IOTHUB_READONLY_PASSWORD", "from-the-env-42")
    call_command("readonly_role", role=ROLE)
    assert f"Role {ROLE} updated: LOGIN, SELECT on telemetry," in capsys.readouterr().out
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        readonly(PASSWORD)
    readonly("from-the-env-42")
