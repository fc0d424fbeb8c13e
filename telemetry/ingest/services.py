"""Ingest's write: ``reading_ingest`` validates a parsed body and stores its readings in one statement."""

import hmac
import math
import time
from datetime import UTC, datetime

import orjson
from django.conf import settings
from django.db import IntegrityError, connection

from telemetry.ingest.keys import ingest_key_hash
from telemetry.ingest.statement import PreparedStatement
from telemetry.ingest.validation import device_problems, validate_readings
from telemetry.models import INGESTING_STATUSES

NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"

# One statement for the whole batch, and the request's only round trip. It also admits the devices: a reading of an
# unknown device, of one whose status may not send telemetry, of a keyed device when the request's key ($2, its
# hash) is not that device's, or of a device over its rate, gets a NULL device_id, which the NOT NULL constraint
# refuses, so the statement fails and nothing of the batch is stored (reading_ingest then looks the devices up to
# say why). Rows skipped by ON CONFLICT are absent from the rule trigger's transition table, so a duplicate fires
# no rule; the same rows sent twice are stored once, which lets run() retry it. received_at takes its default,
# now(). $1 is the JSON text of an array of {"device_id", "time", "metrics"} objects.
#
# The rate: each request counts once per device it holds, in ingest_request_counts (unlogged: one row per device,
# updated in place), in the fixed window starting at $3; a device may send $4 requests per window. The counting is
# part of the statement, so a refused request (wrong key, bad device, over the rate) counts nothing: someone
# without a device's key cannot use up its rate. Rows are locked in device order, so concurrent batches of the same
# devices cannot deadlock. An unknown device fails the count's foreign key: a device refusal too.
_INGESTING = ", ".join(f"'{status}'" for status in INGESTING_STATUSES)  # constants: 'active', 'maintenance'
INSERT_READINGS = PreparedStatement(
    "telemetry_insert_readings",
    ["jsonb", "bytea", "timestamptz", "integer"],
    f"""
    WITH readings AS (
        SELECT r.device_id, r.time, r.metrics
        FROM jsonb_to_recordset($1::jsonb) AS r(device_id uuid, time timestamptz, metrics jsonb)
    ),
    counts AS (
        INSERT INTO ingest_request_counts AS c (device_id, window_start, requests)
        SELECT DISTINCT device_id, $3, 1 FROM readings ORDER BY device_id
        ON CONFLICT (device_id) DO UPDATE SET
            requests = CASE WHEN c.window_start >= excluded.window_start THEN c.requests + 1 ELSE 1 END,
            window_start = greatest(c.window_start, excluded.window_start)
        RETURNING device_id, requests
    )
    INSERT INTO telemetry (device_id, time, metrics)
    SELECT
        (
            SELECT d.id FROM devices d
            WHERE d.id = r.device_id AND d.status IN ({_INGESTING}) AND c.requests <= $4
                AND (d.ingest_key_id IS NULL
                    OR d.ingest_key_id = (SELECT k.id FROM ingest_keys k WHERE k.key_hash = $2))
        ),
        r.time,
        r.metrics
    FROM readings r JOIN counts c USING (device_id)
    ON CONFLICT (device_id, time) DO NOTHING
""",
)


# The key hash of a request without a key: no key has it (hashes are 32 bytes). Not NULL: with NULL, PostgreSQL's
# custom plans fold the key lookup away, look cheaper than the generic plan and are chosen for every execution,
# planning the statement again each time (measured: -40 % on single-reading ingest).
NO_KEY = b""


class KeyRefused(Exception):
    """The request lacks the key of ``devices`` (device ids, in body order); nothing of it is stored."""

    def __init__(self, devices):
        super().__init__(devices)
        self.devices = devices


class RateLimited(Exception):
    """``devices`` (ids) have used up their requests in the current window; retry in ``retry_after`` seconds."""

    def __init__(self, devices, retry_after):
        super().__init__(devices, retry_after)
        self.devices = devices
        self.retry_after = retry_after


class InvalidReadings(Exception):
    """The problems of a refused body, ``[{"pointer", "detail", "code"}]`` in body order; nothing of it is stored."""

    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


def reading_ingest(*, payload, key=None, now=None):
    """Stores the readings of ``payload`` (a parsed body: one reading or an array of them) sent with the device key
    ``key`` (None without one) and returns ``(accepted, duplicates)``, committed.

    All or nothing: raises ``KeyRefused`` when a keyed device of the body is not given its key (whatever else is
    wrong with the body), else ``InvalidReadings`` listing every problem of the body, device problems included,
    else ``RateLimited`` when a device is over its rate. The devices are not looked up before the INSERT, which
    refuses readings of unknown, non-ingesting, unauthenticated or over-rate devices itself; one query then says
    why (also for a device deleted, retired or keyed while the statement ran). A reading with the device and time
    of a stored one, or of an earlier one in the batch (the first wins), is a duplicate: not stored again, only
    counted.
    """
    key_hash = ingest_key_hash(key) if key is not None else NO_KEY
    devices = _DeviceLookup(key_hash)
    readings, errors = validate_readings(payload, now=now or datetime.now(UTC), device_statuses=devices)
    if errors:
        devices.raise_for_key()
        raise InvalidReadings(errors)
    first_of_each = {}
    for reading in readings:
        first_of_each.setdefault((reading.device_id, reading.time), reading)
    rows = orjson.dumps(
        [{"device_id": r.device_id, "time": r.time, "metrics": r.metrics} for r in first_of_each.values()]
    ).decode()
    parameters = insert_readings_parameters(rows, key_hash)
    try:
        accepted = INSERT_READINGS.run(parameters)
    except IntegrityError as exc:
        if not _is_device_refusal(exc.__cause__):
            raise
        errors = device_problems(readings, devices)
        devices.raise_for_key()
        if errors:
            raise InvalidReadings(errors) from exc
        _raise_for_rate({device_id for device_id, _ in first_of_each}, window_start=parameters[2])
        raise
    return accepted, len(readings) - accepted


def insert_readings_parameters(rows, key_hash=NO_KEY):
    """INSERT_READINGS' parameters: ``rows`` (the JSON text of its readings), the hash of the request's device key
    (NO_KEY without one), the start of the current rate window and the requests a device may send in it."""
    requests, period = settings.INGEST_DEVICE_RATE
    window_start = datetime.fromtimestamp(time.time() // period * period, UTC)
    return [rows, key_hash, window_start, requests]


class _DeviceLookup:
    """The devices of a refused request, looked up once: ``{device_id: status}`` of those among ``device_ids`` that
    exist (validation's ``device_statuses``), and which of them are keyed with a key other than the request's."""

    def __init__(self, key_hash):
        self.key_hash = key_hash
        self.unauthenticated = []  # (device_id, ingest_key_id)

    def __call__(self, device_ids):
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT d.id::text, d.status, k.id, k.key_hash
                FROM devices d LEFT JOIN ingest_keys k ON k.id = d.ingest_key_id
                WHERE d.id = ANY(%s::uuid[])
                """,
                [list(device_ids)],
            )
            rows = cursor.fetchall()
        presented = self.key_hash
        self.unauthenticated = [
            (device_id, key_id)
            for device_id, _, key_id, key_hash in sorted(rows)
            if key_id is not None and not hmac.compare_digest(bytes(key_hash), presented)
        ]
        return {device_id: status for device_id, status, _, _ in rows}

    def raise_for_key(self):
        """Counts the refusal on each key the request lacked, then raises KeyRefused; nothing without such keys."""
        if not self.unauthenticated:
            return
        key_ids = sorted({key_id for _, key_id in self.unauthenticated})
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE ingest_keys SET refusals = refusals + 1, last_refused_at = now() WHERE id = ANY(%s)",
                [key_ids],
            )
        raise KeyRefused([device_id for device_id, _ in self.unauthenticated])


def _raise_for_rate(device_ids, *, window_start):
    """Raises RateLimited when devices of the refused statement had used up their requests of its window."""
    requests, period = settings.INGEST_DEVICE_RATE
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT device_id::text FROM ingest_request_counts
            WHERE device_id = ANY(%s::uuid[]) AND window_start >= %s AND requests >= %s
            ORDER BY device_id
            """,
            [sorted(device_ids), window_start, requests],
        )
        limited = [device_id for (device_id,) in cursor.fetchall()]
    if limited:
        retry_after = max(1, math.ceil(window_start.timestamp() + period - time.time()))
        raise RateLimited(limited, retry_after)


def _is_device_refusal(error):
    """Whether the INSERT failed on a device: one it nulled out (unknown, not ingesting, unauthenticated or over
    its rate), or one deleted while the statement ran (the foreign keys)."""
    pgcode = getattr(error, "pgcode", None)
    if pgcode == NOT_NULL_VIOLATION:
        return error.diag.column_name == "device_id"
    return pgcode == FOREIGN_KEY_VIOLATION
