"""Ingest's write: ``reading_ingest`` validates a parsed body and stores its readings in one statement."""

from datetime import UTC, datetime

import orjson
from django.db import IntegrityError, connection

from telemetry.ingest.statement import PreparedStatement
from telemetry.ingest.validation import device_problems, validate_readings
from telemetry.models import INGESTING_STATUSES

NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"

# One statement for the whole batch, and the request's only round trip. It also checks the devices: a reading of an
# unknown device, or of one whose status may not send telemetry, gets a NULL device_id, which the NOT NULL
# constraint refuses, so the statement fails and nothing of the batch is stored (reading_ingest then looks the
# devices up to name the readings). Rows skipped by ON CONFLICT are absent from the rule trigger's transition table,
# so a duplicate fires no rule; the same rows sent twice are stored once, which lets run() retry it. received_at
# takes its default, now(). Its parameter is the JSON text of an array of {"device_id", "time", "metrics"} objects.
_INGESTING = ", ".join(f"'{status}'" for status in INGESTING_STATUSES)  # constants: 'active', 'maintenance'
INSERT_READINGS = PreparedStatement(
    "telemetry_insert_readings",
    ["jsonb"],
    f"""
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT
        (SELECT d.id FROM devices d WHERE d.id = r.device_id AND d.status IN ({_INGESTING})),
        r.time,
        r.metrics
    FROM jsonb_to_recordset($1::jsonb) AS r(device_id uuid, time timestamptz, metrics jsonb)
    ON CONFLICT (device_id, time) DO NOTHING
""",
)


class InvalidReadings(Exception):
    """The problems of a refused body, ``[{"pointer", "detail", "code"}]`` in body order; nothing of it is stored."""

    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


def reading_ingest(*, payload, now=None):
    """Stores the readings of ``payload`` (a parsed body: one reading or an array of them) and returns
    ``(accepted, duplicates)``, committed.

    All or nothing: raises ``InvalidReadings`` listing every problem of the body, device problems included. The
    devices are not looked up before the INSERT, which refuses readings of unknown or non-ingesting devices itself;
    one query then names them (also a device deleted or retired while the statement ran). A reading with the device
    and time of a stored one, or of an earlier one in the batch (the first wins), is a duplicate: not stored again,
    only counted.
    """
    readings, errors = validate_readings(payload, now=now or datetime.now(UTC), device_statuses=_device_statuses)
    if errors:
        raise InvalidReadings(errors)
    first_of_each = {}
    for reading in readings:
        first_of_each.setdefault((reading.device_id, reading.time), reading)
    rows = orjson.dumps(
        [{"device_id": r.device_id, "time": r.time, "metrics": r.metrics} for r in first_of_each.values()]
    ).decode()
    try:
        accepted = INSERT_READINGS.run([rows])
    except IntegrityError as exc:
        errors = device_problems(readings, _device_statuses) if _is_device_refusal(exc.__cause__) else []
        if not errors:
            raise
        raise InvalidReadings(errors) from exc
    return accepted, len(readings) - accepted


def _device_statuses(device_ids):
    """``{device_id: status}`` of the devices among ``device_ids`` that exist."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id::text, status FROM devices WHERE id = ANY(%s::uuid[])", [list(device_ids)])
        return dict(cursor.fetchall())


def _is_device_refusal(error):
    """Whether the INSERT failed on a device: one it nulled out (unknown or not ingesting), or one deleted while
    the statement ran (the foreign key)."""
    pgcode = getattr(error, "pgcode", None)
    if pgcode == NOT_NULL_VIOLATION:
        return error.diag.column_name == "device_id"
    return pgcode == FOREIGN_KEY_VIOLATION
