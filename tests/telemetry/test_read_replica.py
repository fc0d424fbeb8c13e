"""The read replica (iothub/replica.py) against a real PostgreSQL streaming replica: a hot standby of the suite's
throwaway cluster (pg_basebackup over its private socket, streaming from it), started on a port of its own, and
the app server (granian, iothub/serve.py) serving the app with DATABASE_REPLICA_URL naming it.

What proves where a read ran: with replay paused on the standby (pg_wal_replay_pause), whatever is written on the
primary afterwards is missing from the replica only. Both editions: the aggregates are continuous aggregates on one
and the project's rollups on the other, each read on a hot standby.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import orjson
import psycopg2
import pytest
from django.conf import settings
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from bench.stack import free_port, port_open
from iothub.models import Role
from telemetry import timescale
from telemetry.selectors import telemetry_aggregate
from tests.deploy.test_proxy_tls import request, stop, wait_until
from tests.factories import DeviceFactory, UserFactory, insert_readings

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
API = "/api/v1"
# The app server sits behind the TLS proxy in production; the proxy's header keeps Django from redirecting.
PROXIED = {"X-Forwarded-Proto": "https", "Host": "127.0.0.1"}
PRIMARY_DIR = os.environ.get("TEST_PG_CLUSTER_DIR")

pytestmark = [
    pytest.mark.skipif(not PRIMARY_DIR, reason="needs the throwaway cluster of make test (TEST_PG_CLUSTER_DIR)"),
    # The app server and the standby are other processes: they see only what is committed.
    pytest.mark.django_db(transaction=True),
]


def as_postgres(*command, log=None, timeout=120):
    if os.geteuid() == 0:
        command = ("runuser", "-u", "postgres", "--", *command)
    result = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=timeout)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    assert result.returncode == 0, f"{command}: {result.stderr}\n{tail}"
    return result


class Standby:
    """A hot standby of the test cluster, streaming from it; superuser connections to both over their sockets."""

    def __init__(self, directory, port):
        self.directory = directory
        self.data = directory / "data"
        self.port = port
        self.log = directory / "postgres.log"
        self.primary = (PRIMARY_DIR, int(os.environ["TEST_PG_PORT"]))

    def create(self):
        self.directory.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        host, port = self.primary
        # -R: standby.signal and primary_conninfo (the primary's socket); -X stream: the WAL of the copy itself.
        as_postgres(
            str(PG_BIN / "pg_basebackup"), "-h", host, "-p", str(port), "-U", "postgres", "-D", str(self.data),
            "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# the standby\nport = {self.port}\nunix_socket_directories = '{self.directory}'\n")
        self.start()

    def start(self):
        as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start", log=self.log
        )  # fmt: skip

    def stop(self):
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def remove(self):
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def query(self, *statements, on_primary=False):
        """The rows of the last statement; each statement is a transaction of its own."""
        host, port = self.primary if on_primary else (str(self.directory), self.port)
        database = connection.settings_dict["NAME"]
        with contextlib.closing(psycopg2.connect(host=host, port=port, user="postgres", dbname=database)) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return cursor.fetchall()

    def catch_up(self, timeout=30):
        """Waits until the standby has replayed every transaction the primary had committed when called.

        The test cluster commits asynchronously: a commit's WAL reaches the standby once the WAL writer flushed
        it, up to wal_writer_delay later. One synchronous commit that writes WAL flushes the WAL before it too; the
        transaction has to write some (here a logical message, which changes no table): one that only took a
        transaction id commits asynchronously whatever synchronous_commit says."""
        (target,) = self.query(
            "SET synchronous_commit = on",
            "SELECT pg_logical_emit_message(true, 'iothub-tests', 'catch up')",
            "SELECT pg_current_wal_lsn()",
            on_primary=True,
        )[0]
        deadline = time.monotonic() + timeout
        while self.query(f"SELECT pg_last_wal_replay_lsn() < '{target}'::pg_lsn")[0][0]:
            assert time.monotonic() < deadline, f"the standby did not replay up to {target} in {timeout} s"
            time.sleep(0.05)

    @contextlib.contextmanager
    def replay_paused(self):
        """Replay paused: what the primary writes meanwhile is on the primary only. Resumed and caught up after."""
        self.catch_up()
        self.query("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            self.query("SELECT pg_wal_replay_resume()")
            self.catch_up()


@pytest.fixture(scope="module")
def standby(django_db_setup, django_db_blocker):
    """Created once the test database exists, so that the copy holds it."""
    # A port the kernel has free now: a fixed one may be the local port of some client connection.
    port = int(os.environ.get("TEST_PG_REPLICA_PORT") or free_port())
    standby = Standby(Path(PRIMARY_DIR).parent / f"test-replica-{port}", port)
    standby.remove()  # left behind by a killed run
    try:
        standby.create()
        yield standby
    finally:
        standby.remove()


@pytest.fixture(scope="module")
def server(standby, tmp_path_factory):
    """The app server (one worker, one thread) with the primary's test database and the standby's copy of it."""
    database = connection.settings_dict

    def url(port):
        user, password, name = (quote(str(database[key]), safe="") for key in ("USER", "PASSWORD", "NAME"))
        return f"postgres://{user}:{password}@127.0.0.1:{port}/{name}"

    port = free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    environment = {
        **os.environ,
        "DATABASE_URL": url(database["PORT"]),
        "DATABASE_REPLICA_URL": url(standby.port),
        "DB_REPLICA_RETRY_SECONDS": "1",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_DEBUG": "0",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "1",
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "iothub.serve"],
            cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), process, log)
        yield port, log
    finally:
        stop(process)


@pytest.fixture
def api(server, standby):
    """``api(method, path, payload=None, user=None)`` -> (status, body) from the app server of `server`."""
    port, _ = server
    standby.catch_up()  # the previous test's data flushed on both

    def call(method, path, payload=None, user=None):
        headers = {**PROXIED, "Content-Type": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {RefreshToken.for_user(user).access_token}"
        body = orjson.dumps(payload) if payload is not None else None
        response = request(port, method, API + path, body=body, headers=headers)
        return response.status, (response.json() if response.body else None)

    return call


def iso(moment):
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reading(device, moment, **metrics):
    return {"device_id": str(device.pk), "timestamp": iso(moment), "metrics": metrics}


def readings_of(api, admin_user, device, start, end):
    query = urlencode({"start": iso(start), "end": iso(end), "order": "asc"})
    status, body = api("GET", f"/devices/{device}/telemetry/?{query}", user=admin_user)
    assert status == 200, body
    return [item["metrics"] for item in body["results"]]


def aggregate_of(api, admin_user, device, start, end, interval="1m"):
    query = urlencode({"start": iso(start), "end": iso(end), "interval": interval})
    status, body = api("GET", f"/devices/{device}/telemetry/aggregate/?{query}", user=admin_user)
    assert status == 200, body
    return [(item["bucket"], item["metric"], item["count"], item["sum"]) for item in body["results"]]


def test_telemetry_reads_come_from_the_replica(api, standby, admin_user):
    device = DeviceFactory()
    now = datetime.now(UTC).replace(microsecond=0)
    minute = now.replace(second=0) - timedelta(minutes=5)
    start, end = minute - timedelta(minutes=1), now + timedelta(minutes=1)
    assert api("POST", "/telemetry/ingest/", reading(device, minute, temperature=20))[0] == 201

    with standby.replay_paused():
        # Written on the primary (201 after COMMIT), not yet on the replica.
        status, body = api("POST", "/telemetry/ingest/", reading(device, minute + timedelta(seconds=1), temperature=22))
        assert (status, body) == (201, {"accepted": 1, "merged": 0, "duplicates": 0})

        assert readings_of(api, admin_user, device.pk, start, end) == [{"temperature": 20}]
        status, latest = api("GET", f"/devices/{device.pk}/telemetry/latest/", user=admin_user)
        assert status == 200, latest
        assert latest["metrics"]["temperature"]["value"] == 20
        assert aggregate_of(api, admin_user, device.pk, start, end) == [(iso(minute), "temperature", 1, 20)]

    # Replayed: the same reads now see the second reading.
    assert readings_of(api, admin_user, device.pk, start, end) == [{"temperature": 20}, {"temperature": 22}]
    latest = api("GET", f"/devices/{device.pk}/telemetry/latest/", user=admin_user)[1]
    assert latest["metrics"]["temperature"]["value"] == 22
    assert aggregate_of(api, admin_user, device.pk, start, end) == [(iso(minute), "temperature", 2, 42)]


def test_devices_rules_and_events_are_read_on_the_primary(api, standby, admin_user):
    device_type = DeviceFactory().device_type
    now = datetime.now(UTC).replace(microsecond=0)
    with standby.replay_paused():
        new = {"name": "new", "serial_number": "NEW-1", "device_type": device_type.pk}
        status, device = api("POST", "/devices/", new, user=admin_user)
        assert status == 201, device
        # The device, written a moment ago, is found: its telemetry answers (from the replica, still empty).
        assert api("GET", f"/devices/{device['id']}/", user=admin_user)[0] == 200
        assert readings_of(api, admin_user, device["id"], now - timedelta(hours=1), now + timedelta(minutes=1)) == []
        status, rule = api(
            "POST",
            "/rules/",
            {"name": "hot", "metric": "temperature", "operator": "gt", "threshold": 30},
            user=admin_user,
        )
        assert status == 201, rule
        breach = {"device_id": device["id"], "timestamp": iso(now), "metrics": {"temperature": 35}}
        assert api("POST", "/telemetry/ingest/", breach)[0] == 201
        status, events = api("GET", f"/events/?rule={rule['id']}", user=admin_user)
        assert status == 200, events
        assert [event["trigger_values"]["value"] for event in events["results"]] == [35]
        assert api("GET", "/devices/?search=NEW-1", user=admin_user)[1]["count"] == 1
        # Replay paused: none of it is on the replica yet.
        assert standby.query("SELECT count(*) FROM events") == [(0,)]


def test_health_shows_the_lag_to_admins_only(api, standby, admin_user):
    device = DeviceFactory()
    now = datetime.now(UTC)
    status, body = api("GET", "/health/", user=admin_user)
    assert status == 200, body
    assert body["replica"]["database"] == "ok"
    assert body["replica"]["replay_paused"] is False
    with standby.replay_paused():
        assert api("POST", "/telemetry/ingest/", reading(device, now, temperature=1))[0] == 201
        time.sleep(0.2)
        status, body = api("GET", "/health/", user=admin_user)
        assert status == 200, body
        lag = body["replica"]
        assert lag["database"] == "ok"
        assert lag["replay_paused"] is True
        assert lag["lag_bytes"] > 0
        assert lag["lag_seconds"] >= 0.2
        status, anonymous = api("GET", "/health/")
        assert (status, anonymous) == (200, {"database": "ok", "migrations_applied": True})
        viewer = UserFactory(role=Role.VIEWER, username="replica-viewer")
        assert "replica" not in api("GET", "/health/", user=viewer)[1]
    # Caught up: no lag, unless the primary wrote some more WAL of its own meanwhile (a checkpoint, a snapshot of
    # running transactions for standbys); then the next look shows none.
    deadline = time.monotonic() + 30
    while (lag := api("GET", "/health/", user=admin_user)[1]["replica"]) != {
        "database": "ok", "lag_bytes": 0, "lag_seconds": 0.0, "replay_paused": False
    }:  # fmt: skip
        assert time.monotonic() < deadline, lag
        time.sleep(0.2)


def test_aggregates_of_every_level_read_on_the_hot_standby(api, standby, admin_user, committed_aggregates):
    """Stored buckets (refreshed) and the real-time part, continuous aggregates or rollups, read on the standby
    equal what the primary computes."""
    device = DeviceFactory()
    now = datetime.now(UTC).replace(microsecond=0)
    day = now.replace(hour=0, minute=0, second=0) - timedelta(days=3)
    old = [(day + timedelta(hours=h, minutes=m), {"temperature": h + m / 10}) for h in range(0, 48, 5) for m in (1, 7)]
    insert_readings(device, old)
    timescale.refresh_aggregates(
        retention_days=settings.TELEMETRY_RETENTION_DAYS,
        compress_after_days=settings.TELEMETRY_COMPRESS_AFTER_DAYS,
        aggregate_retention_days=settings.TELEMETRY_AGGREGATE_RETENTION_DAYS,
    )
    insert_readings(device, [(now - timedelta(minutes=3), {"temperature": 99})])  # after the refresh
    standby.catch_up()
    start, end = day - timedelta(days=1), now.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    for interval, width in (("1d", timedelta(days=1)), ("1h", timedelta(hours=1)), ("1m", timedelta(minutes=1))):
        on_primary = [
            (iso(row["bucket"]), row["metric"], row["count"], row["sum"])
            for row in telemetry_aggregate(device=device, start=start, end=end, interval=width)
        ]
        assert sum(count for _, _, count, _ in on_primary) >= len(old), interval
        assert aggregate_of(api, admin_user, device.pk, start, end, interval) == on_primary, interval


def test_replica_down_reads_fall_back_to_the_primary(api, standby, admin_user, server):
    device = DeviceFactory()
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(minutes=1), now + timedelta(minutes=1)
    assert api("POST", "/telemetry/ingest/", reading(device, now, temperature=5))[0] == 201
    standby.catch_up()
    assert readings_of(api, admin_user, device.pk, start, end) == [{"temperature": 5}]  # a connection to the replica
    standby.stop()
    try:
        # The replica's connection is gone: the reads go to the primary, which has everything.
        assert api("POST", "/telemetry/ingest/", reading(device, now + timedelta(seconds=1), temperature=6))[0] == 201
        assert readings_of(api, admin_user, device.pk, start, end) == [{"temperature": 5}, {"temperature": 6}]
        assert api("GET", f"/devices/{device.pk}/telemetry/latest/", user=admin_user)[0] == 200
        status, body = api("GET", "/health/", user=admin_user)
        assert status == 200, body
        assert body["database"] == "ok"
        assert body["replica"] == {"database": "unavailable", "lag_bytes": None, "lag_seconds": None,
                                   "replay_paused": None}  # fmt: skip
        assert "the read replica does not answer" in server[1].read_text()
    finally:
        standby.start()
    standby.catch_up()
    # Back after DB_REPLICA_RETRY_SECONDS (1 s here): replay paused, a new reading is missing from the reads again.
    time.sleep(1.1)
    with standby.replay_paused():
        assert api("POST", "/telemetry/ingest/", reading(device, now + timedelta(seconds=2), temperature=7))[0] == 201
        assert readings_of(api, admin_user, device.pk, start, end) == [{"temperature": 5}, {"temperature": 6}]
