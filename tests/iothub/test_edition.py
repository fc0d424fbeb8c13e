"""The TimescaleDB edition is recorded when the database is migrated, and the code reads the record; a library that
serves another edition stops `migrate`, the web process and the worker at start with a message saying what to do.

The other edition is made real, not faked: the test cluster's `timescaledb.license` is switched with ALTER SYSTEM
and a reload (new sessions serve the other edition; the community build serves both), and switched back after."""

import os
import subprocess
import sys
import time

import psycopg2
import pytest
from django.db import IntegrityError, connection, transaction

from bench.stack import ROOT, free_port, lib_script
from iothub import edition
from telemetry import timescale
from tests.conftest import env_for_test_database, manage_on_test_database

# Transactional: subprocesses migrate the test database, and sessions are closed to meet the switched library.
pytestmark = pytest.mark.django_db(transaction=True)


def superuser_sql(statement):
    """One statement as the cluster's superuser over its socket, in the test database with TimescaleDB loaded (so
    that its settings are known). Tests run where `make test` started the cluster."""
    cluster, port = os.environ.get("TEST_PG_CLUSTER_DIR"), os.environ.get("TEST_PG_PORT")
    if not cluster:
        pytest.skip("needs the cluster `make test` starts (TEST_PG_CLUSTER_DIR)")
    return lib_script(
        'as_pg "$PG_BIN/psql" -h "$1" -p "$2" -U postgres -d "$3" -v ON_ERROR_STOP=1 -qAt'
        ' -c "SELECT count(*) FROM timescaledb_information.hypertables" -c "$4"',
        cluster,
        port,
        connection.settings_dict["NAME"],
        statement,
        capture=True,
    )


def served_to_a_new_session():
    with psycopg2.connect(**connection.get_connection_params()) as new, new.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM timescaledb_information.hypertables")
        cursor.execute("SELECT current_setting('timescaledb.license')")
        return cursor.fetchone()[0]


def switch_license(value):
    """ALTER SYSTEM SET (or RESET with None) timescaledb.license, reloaded; returns once new sessions serve it."""
    if value is None:
        superuser_sql("ALTER SYSTEM RESET timescaledb.license")
    else:
        superuser_sql(f"ALTER SYSTEM SET timescaledb.license = '{value}'")
    superuser_sql("SELECT pg_reload_conf()")


def skip_unless_both_editions_are_served():
    if "timescale" not in lib_script("library_editions", capture=True).split():
        pytest.skip("this TimescaleDB build serves the Apache-2 edition only")


def wait_until_served(expected):
    deadline = time.monotonic() + 10
    while served_to_a_new_session() != expected:
        assert time.monotonic() < deadline, f"new sessions still do not serve {expected}"
        time.sleep(0.1)


@pytest.fixture
def other_edition(timescaledb_edition):
    """The library serves the other edition to every new session for the duration of the test."""
    other = edition.APACHE if timescaledb_edition == edition.TIMESCALE else edition.TIMESCALE
    skip_unless_both_editions_are_served()
    switch_license(other)
    try:
        wait_until_served(other)
        yield other
    finally:
        switch_license(None)
        wait_until_served(timescaledb_edition)
        connection.close()  # the next test's session serves the test's edition again


def test_the_edition_is_recorded_when_migrated_and_read_from_the_record(timescaledb_edition):
    with connection.cursor() as cursor:
        cursor.execute("SELECT edition FROM timescaledb_edition")
        assert cursor.fetchall() == [(timescaledb_edition,)]
        # One row at most.
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute("INSERT INTO timescaledb_edition (edition) VALUES ('apache')")
    assert edition.recorded() == edition.current() == timescale.edition() == timescaledb_edition


def test_a_library_serving_another_edition_stops_migrate_the_worker_and_the_app_server(
    timescaledb_edition, other_edition
):
    expected = f"migrated under TimescaleDB's {timescaledb_edition} edition, but the TimescaleDB library now serves"

    migrate = manage_on_test_database("migrate", "--noinput")
    assert migrate.returncode != 0
    assert expected in migrate.stderr, migrate.stderr
    assert "make reset" in migrate.stderr

    worker = manage_on_test_database("run_worker", "--poll-interval", "1", timeout=60)
    assert worker.returncode != 0
    assert expected in worker.stderr, worker.stderr

    # A worker that cannot boot stops the app server (granian: the replaced worker fails again at once, a crash
    # loop), with the reason in its log.
    server = subprocess.run(
        [sys.executable, "-m", "iothub.serve"],
        cwd=ROOT,
        env={**env_for_test_database(), "WEB_BIND": f"127.0.0.1:{free_port()}", "WEB_CONCURRENCY": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode != 0
    assert expected in server.stderr, server.stderr


def test_health_is_unhealthy_while_the_library_serves_another_edition(admin_client, other_edition):
    connection.close()  # a new session, which the switched library serves
    response = admin_client.get("/api/v1/health/")
    assert response.status_code == 503
    assert response.json()["timescaledb"] is None


def test_a_database_migrated_before_the_record_existed_is_recorded_as_built_and_stopped_if_served_otherwise(
    timescaledb_edition,
):
    # As a database migrated before 0008: no record. Under the other edition, migrating to 0008 stops there.
    skip_unless_both_editions_are_served()
    unrecord = manage_on_test_database("migrate", "--noinput", "telemetry", "0007")
    assert unrecord.returncode == 0, unrecord.stderr
    try:
        other = edition.APACHE if timescaledb_edition == edition.TIMESCALE else edition.TIMESCALE
        switch_license(other)
        try:
            wait_until_served(other)
            refused = manage_on_test_database("migrate", "--noinput")
        finally:
            switch_license(None)
            wait_until_served(timescaledb_edition)
        assert refused.returncode != 0
        assert (
            f"this database was migrated under TimescaleDB's {timescaledb_edition} edition, "
            f"but the library serves the {other} edition"
        ) in refused.stderr, refused.stderr
    finally:
        rerecord = manage_on_test_database("migrate", "--noinput")
        assert rerecord.returncode == 0, rerecord.stderr
        connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT edition FROM timescaledb_edition")
        assert cursor.fetchall() == [(timescaledb_edition,)]
