"""Writes of the telemetry app: keyword-only ``<entity>_<action>`` functions."""

from contextlib import nullcontext

import orjson
from django.db import IntegrityError, connection, transaction

from telemetry.ingest import ReadingsRefused, device_problems

FOREIGN_KEY_VIOLATION = "23503"

# One statement for the whole batch. Rows skipped by ON CONFLICT are absent from the rule trigger's transition
# table, so a duplicate fires no rule. received_at takes its default, now().
_INSERT_READINGS = """
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT r.device_id, r.time, r.metrics
    FROM jsonb_to_recordset(%s::jsonb) AS r(device_id uuid, time timestamptz, metrics jsonb)
    ON CONFLICT (device_id, time) DO NOTHING
"""


def reading_ingest(*, readings):
    """Stores validated readings (``telemetry.ingest.Reading``) and returns ``(accepted, duplicates)``, committed.

    A reading with the device and time of a stored one, or of an earlier one in ``readings`` (the first wins),
    is a duplicate: not stored again, only counted. Raises ``ReadingsRefused`` when a device was deleted since
    validation, with the same problems as for an unknown device.
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
        errors = device_problems(readings) if getattr(exc.__cause__, "pgcode", None) == FOREIGN_KEY_VIOLATION else []
        if not errors:
            raise
        raise ReadingsRefused(errors) from exc
    return accepted, len(readings) - accepted
