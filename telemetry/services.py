"""Writes of the telemetry app: keyword-only ``<entity>_<action>`` functions."""

from contextlib import nullcontext

import orjson
from django.db import IntegrityError, connection, transaction

from telemetry.ingest import ReadingsRefused, device_problems
from telemetry.models import INGESTING_STATUSES

NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"

# One statement for the whole batch, and the request's only round trip besides the connection health check. It
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
    FROM jsonb_to_recordset(%s::jsonb) AS r(device_id uuid, time timestamptz, metrics jsonb)
    ON CONFLICT (device_id, time) DO NOTHING
"""


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
    )
    # Alone (autocommit), the statement is its own transaction, committed when execute returns: no BEGIN and
    # COMMIT round trips, which would cost single-reading ingest ~10%. Inside a caller's transaction, a
    # savepoint keeps a foreign key failure from aborting it.
    guard = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute(_INSERT_READINGS, [rows.decode()])
            accepted = cursor.rowcount
    except IntegrityError as exc:
        errors = device_problems(readings) if _is_device_refusal(exc.__cause__) else []
        if not errors:
            raise
        raise ReadingsRefused(errors) from exc
    return accepted, len(readings) - accepted


def _is_device_refusal(error):
    """Whether the INSERT failed on a device: one it nulled out (unknown or not ingesting), or one deleted while
    the statement ran (the foreign key)."""
    pgcode = getattr(error, "pgcode", None)
    if pgcode == NOT_NULL_VIOLATION:
        return error.diag.column_name == "device_id"
    return pgcode == FOREIGN_KEY_VIOLATION
