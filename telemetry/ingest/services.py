"""Writes of the telemetry app: keyword-only ``<entity>_<action>`` functions."""

import logging
import weakref

import orjson
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from telemetry.ingest.validation import ReadingsRefused, device_problems
from telemetry.models import INGESTING_STATUSES

logger = logging.getLogger(__name__)

NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"

# One statement for the whole batch, and the request's only round trip (see _insert_alone for the health check). It
# also checks the devices: a reading of an unknown device, or of one whose status may not send telemetry, gets a
# NULL device_id, which the NOT NULL constraint refuses, so the statement fails and nothing of the batch is stored
# (reading_ingest then looks the devices up to name the readings). Rows skipped by ON CONFLICT are absent from the
# rule trigger's transition table, so a duplicate fires no rule. received_at takes its default, now().
_INGESTING = ", ".join(f"'{status}'" for status in INGESTING_STATUSES)  # constants: 'active', 'maintenance'
_INSERT_READINGS = f"""
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT
        (SELECT d.id FROM devices d WHERE d.id = r.device_id AND d.status IN ({_INGESTING})),
        r.time,
        r.metrics
    FROM jsonb_to_recordset($1::jsonb) AS r(device_id uuid, time timestamptz, metrics jsonb)
    ON CONFLICT (device_id, time) DO NOTHING
"""

# Prepared once per database connection: planning the INSERT into the hypertable cost more server CPU than
# executing it for a single reading (≈ 0.2 ms of ≈ 0.6 ms). psycopg2 has no protocol-level prepared statements,
# hence SQL's PREPARE/EXECUTE; a prepared statement outlives a rolled-back transaction and goes with its session.
_PREPARE = f"PREPARE telemetry_insert_readings (jsonb) AS {_INSERT_READINGS}"
_EXECUTE = "EXECUTE telemetry_insert_readings (%s)"
_prepared_on = weakref.WeakSet()  # psycopg2 connections whose session has the statement


def insert_readings(cursor, rows):
    """Runs the ingest statement on ``cursor`` (Django's or psycopg2's) for ``rows``, the JSON text of an array of
    ``{"device_id", "time", "metrics"}`` objects; returns how many were inserted. No transaction of its own."""
    session = cursor.connection  # psycopg2's connection, also through Django's cursor wrapper
    if session not in _prepared_on:
        cursor.execute(_PREPARE)
        _prepared_on.add(session)
    cursor.execute(_EXECUTE, [rows])
    return cursor.rowcount


def reading_ingest(*, readings):
    """Stores validated readings (``telemetry.ingest.Reading``) and returns ``(accepted, duplicates)``, committed.

    A reading with the device and time of a stored one, or of an earlier one in ``readings`` (the first wins),
    is a duplicate: not stored again, only counted. Raises ``ReadingsRefused``, with the problems validation
    would list, when a device is unknown or may not send telemetry (validation leaves that to this statement), also
    when it was deleted or changed since.
    """
    first_of_each = {}
    for reading in readings:
        first_of_each.setdefault((reading.device_id, reading.time), reading)
    rows = orjson.dumps(
        [{"device_id": r.device_id, "time": r.time, "metrics": r.metrics} for r in first_of_each.values()]
    ).decode()
    try:
        if connection.in_atomic_block:
            # Inside a caller's transaction, a savepoint keeps a foreign key failure from aborting it.
            with transaction.atomic(), connection.cursor() as cursor:
                accepted = insert_readings(cursor, rows)
        else:
            accepted = _insert_alone(rows)
    except IntegrityError as exc:
        errors = device_problems(readings) if _is_device_refusal(exc.__cause__) else []
        if not errors:
            raise
        raise ReadingsRefused(errors) from exc
    return accepted, len(readings) - accepted


def _insert_alone(rows):
    """The statement in autocommit: its own transaction, committed when execute returns (no BEGIN and COMMIT round
    trips, which would cost single-reading ingest ~10 %), and without the connection health check.

    With CONN_HEALTH_CHECKS, Django sends ``SELECT 1`` before the first query of each request on a reused
    connection: a round trip as long as a single reading's INSERT on a busy machine. Here a broken connection shows
    itself on the statement instead, which then runs once more on a new connection. That is safe because the
    statement is idempotent: had the first attempt committed after all (the connection broke after COMMIT), its
    readings come back as duplicates, stored once.
    """
    reused = connection.connection is not None
    connection.health_check_done = True  # Django's flag: this request's check is done (by the retry below)
    try:
        with connection.cursor() as cursor:
            return insert_readings(cursor, rows)
    except (OperationalError, InterfaceError):
        if not reused or connection.is_usable():  # no round trip on a connection psycopg2 knows is broken
            raise
        logger.info("ingest: the database connection was broken; sending the readings on a new one")
        connection.close()
    with connection.cursor() as cursor:
        return insert_readings(cursor, rows)


def _is_device_refusal(error):
    """Whether the INSERT failed on a device: one it nulled out (unknown or not ingesting), or one deleted while
    the statement ran (the foreign key)."""
    pgcode = getattr(error, "pgcode", None)
    if pgcode == NOT_NULL_VIOLATION:
        return error.diag.column_name == "device_id"
    return pgcode == FOREIGN_KEY_VIOLATION
