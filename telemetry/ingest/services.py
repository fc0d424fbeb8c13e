"""Ingest's write: ``reading_ingest`` validates a parsed body and stores its readings in one statement."""

import hmac
import math
import time
from datetime import UTC, datetime
from typing import NamedTuple

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection

from telemetry.ingest.keys import ingest_key_hash
from telemetry.ingest.statement import PreparedStatement
from telemetry.ingest.validation import KnownDevice, device_problems, pointer, validate_readings
from telemetry.models import INGESTING_STATUSES

NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"
# Raised by public.telemetry_merge_adds_metrics() (sql/functions/): a metric both readings hold, with other values.
READING_CONFLICT = "IO003"

# Each statement below stores a whole request and is its only round trip (a single reading meeting a stored one
# aside: see reading_ingest). Each also admits the devices: a reading of an unknown device, of one whose status may
# not send telemetry, of a keyed device when the request's key ($2, its hash) is not that device's, of a device
# over its rate, or with a metric its type does not declare when the type has strict metrics, gets a NULL
# device_id, which the NOT NULL constraint refuses, so the statement fails and nothing of the request is stored
# (reading_ingest then looks the devices up to say why). The same rows sent twice are stored once, which lets run()
# retry them. received_at takes its default, now(), on insert. $1 is the JSON text of an
# array of {"device_id", "time", "metrics"} objects, in (device, time) order.
#
# The rate: each request counts once per device it holds, in ingest_request_counts (unlogged: one row per device,
# updated in place), in the fixed window starting at $3; a device may send $4 requests per window. $5 is what the
# statement adds to a count of the window: 1, or 0 for the merge that follows a single reading's first statement
# (which counted the request already; a new row or window counts 1 either way). The counting is part of the
# statement, so a refused request (wrong key, bad device, over the rate) counts nothing: someone without a device's
# key cannot use up its rate. Rows are locked in device order, so concurrent batches of the same devices cannot
# deadlock. An unknown device fails the count's foreign key: a device refusal too.
_INGESTING = ", ".join(f"'{status}'" for status in INGESTING_STATUSES)  # constants: 'active', 'maintenance'
_PARAMETER_TYPES = ["jsonb", "bytea", "timestamptz", "integer", "integer"]
_READINGS_AND_COUNTS = """
    readings AS (
        SELECT r.device_id, r.time, r.metrics
        FROM jsonb_to_recordset($1::jsonb) AS r(device_id uuid, time timestamptz, metrics jsonb)
    ),
    counts AS (
        INSERT INTO ingest_request_counts AS c (device_id, window_start, requests)
        SELECT DISTINCT device_id, $3, 1 FROM readings ORDER BY device_id
        ON CONFLICT (device_id) DO UPDATE SET
            requests = CASE WHEN c.window_start >= excluded.window_start THEN c.requests + $5 ELSE 1 END,
            window_start = greatest(c.window_start, excluded.window_start)
        RETURNING device_id, requests
    )
"""
_READINGS = f"""
    INSERT INTO telemetry AS t (device_id, time, metrics)
    SELECT
        (
            SELECT d.id FROM devices d JOIN device_types dt ON dt.id = d.device_type_id
            WHERE d.id = r.device_id AND d.status IN ({_INGESTING}) AND c.requests <= $4
                AND (d.ingest_key_id IS NULL
                    OR d.ingest_key_id = (SELECT k.id FROM ingest_keys k WHERE k.key_hash = $2))
                AND CASE WHEN dt.strict_metrics THEN public.metrics_declared(r.metrics, dt.metrics) ELSE true END
        ),
        r.time,
        r.metrics
    FROM readings r JOIN counts c USING (device_id)
"""
# New readings only: a row meeting a stored one is skipped (absent from the rule trigger's transition table, it
# fires nothing). Returns the row count. Unlike the statement below, it fires no UPDATE trigger.
INSERT_READINGS = PreparedStatement(
    "telemetry_insert_readings",
    _PARAMETER_TYPES,
    f"WITH {_READINGS_AND_COUNTS} {_READINGS} ON CONFLICT (device_id, time) DO NOTHING",
)
# Every reading: a row meeting the stored one of its device and time merges into it when it adds metrics
# (telemetry_merge_adds_metrics(); ON CONFLICT DO UPDATE waits for a concurrent writer of the row and then sees its
# metrics, so concurrent merges lose none), is skipped when it adds none (a duplicate: absent from both rule
# triggers' transition tables, it fires nothing), and fails the statement when a metric both hold differs. Rows in
# (device, time) order lock shared rows in one order, so concurrent batches can't deadlock. A merge keeps the
# stored received_at. PostgreSQL fires the statement-level UPDATE triggers for every INSERT … ON CONFLICT DO UPDATE,
# updated rows or not: the rule trigger's twin and, on Apache, the rollup invalidation (≈ 130 µs a statement
# measured on a loaded machine, against ≈ 2.4 ms for the INSERT of a single reading with 100 rules).
_MERGE = f"""
    WITH {_READINGS_AND_COUNTS},
    stored AS (
        {_READINGS}
        ON CONFLICT (device_id, time) DO UPDATE SET metrics = t.metrics || excluded.metrics
        WHERE public.telemetry_merge_adds_metrics(t.device_id, t.time, t.metrics, excluded.metrics)
        -- xmax is 0 on a freshly inserted row and the merging transaction's xid on a row ON CONFLICT updated.
        RETURNING t.device_id, t.time, t.xmax <> 0 AS merged
    )
"""
# Returns one row: (rows inserted, rows merged into).
MERGE_READINGS = PreparedStatement(
    "telemetry_merge_readings",
    _PARAMETER_TYPES,
    f"{_MERGE} SELECT count(*) FILTER (WHERE NOT merged), count(*) FILTER (WHERE merged) FROM stored",
)
# For a batch holding several readings of one device and time: the outcome of each row, (device_id, time, merged);
# a row absent from the result was a duplicate.
MERGE_READINGS_EACH = PreparedStatement(
    "telemetry_merge_readings_each", _PARAMETER_TYPES, f"{_MERGE} SELECT device_id::text, time, merged FROM stored"
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
    """The problems of a refused body, ``[{"pointer", "detail", "code"}]`` in body order; nothing of it is stored.
    ``status`` is 400, or 409 when the readings are valid but contradict stored ones or each other."""

    def __init__(self, errors, status=400):
        super().__init__(errors)
        self.errors = errors
        self.status = status


class Ingested(NamedTuple):
    """What became of a request's readings: ``accepted`` stored as new readings, ``merged`` added metrics to the
    stored (or an earlier) reading of their device and time, ``duplicates`` added nothing."""

    accepted: int
    merged: int
    duplicates: int


class _Row:
    """The readings of a batch with one device and time, combined in body order into what is sent as one row."""

    __slots__ = ("merged", "metrics", "readings")

    def __init__(self, reading):
        self.readings = [reading]
        self.metrics = reading.metrics
        self.merged = 0  # later readings of the group that added metrics to the earlier ones


def reading_ingest(*, payload, key=None, now=None):
    """Stores the readings of ``payload`` (a parsed body: one reading or an array of them) sent with the device key
    ``key`` (None without one) and returns an ``Ingested``, committed.

    All or nothing: raises ``KeyRefused`` when a keyed device of the body is not given its key (whatever else is
    wrong with the body), else ``InvalidReadings`` listing every problem of the body, device problems included
    (400), or every reading contradicting the stored reading of its device and time or an earlier one of the batch
    (409), else ``RateLimited`` when a device is over its rate. The devices are not looked up before the INSERT,
    which refuses readings of unknown, non-ingesting, unauthenticated or over-rate devices, and metrics a strict
    type doesn't declare, itself; one query then says why (also for a device deleted, retired or keyed while the
    statement ran).

    Readings with the device and time of a stored one: one that adds metrics is merged into it (the metrics both
    hold, if any, have equal values), one that adds none is a duplicate, one holding a metric with another value is
    a conflict. Readings of one device and time within the batch are combined first by the same rules, in body
    order; the combined row then counts as its first reading (accepted, merged or — adding nothing to the stored
    reading — a duplicate with every reading of the group).
    """
    key_hash = ingest_key_hash(key) if key is not None else NO_KEY
    devices = _DeviceLookup(key_hash)
    readings, errors = validate_readings(payload, now=now or datetime.now(UTC), known_devices=devices)
    if errors:
        devices.raise_for_key()
        raise InvalidReadings(errors)
    rows, conflicts = _combine(readings)
    if conflicts:
        errors = device_problems(readings, devices)  # the 401 and the 400 go first, as the INSERT would refuse them
        devices.raise_for_key()
        raise InvalidReadings(errors) if errors else InvalidReadings(conflicts, status=409)
    ordered = sorted(rows.items())
    body = orjson.dumps([{"device_id": d, "time": t, "metrics": row.metrics} for (d, t), row in ordered]).decode()
    grouped = len(rows) < len(readings)
    parameters = insert_readings_parameters(body, key_hash)
    try:
        # One row (a single reading): tried as a new reading first, with the statement that fires no UPDATE
        # trigger, so the common case costs what it cost before merges existed; only a row that met a stored
        # reading goes on to the merge, which doesn't count the request again. A batch goes to the merge at once
        # (its triggers' cost is per statement).
        if len(rows) == 1:
            if INSERT_READINGS.run(parameters):
                return _count_groups(rows, dict.fromkeys(rows, False), len(readings))
            parameters[-1] = 0
        result = (MERGE_READINGS_EACH if grouped else MERGE_READINGS).run(parameters)
    except IntegrityError as exc:
        if not _is_device_refusal(exc.__cause__):
            raise
        errors = device_problems(readings, devices)
        devices.raise_for_key()
        if errors:
            raise InvalidReadings(errors) from exc
        _raise_for_rate({device_id for device_id, _ in rows}, window_start=parameters[2])
        raise
    except DatabaseError as exc:
        if getattr(exc.__cause__, "pgcode", None) != READING_CONFLICT:
            raise
        raise InvalidReadings(_stored_conflicts(rows, exc.__cause__), status=409) from exc
    if not grouped:
        [(inserted, merged)] = result
        return Ingested(inserted, merged, len(readings) - inserted - merged)
    return _count_groups(rows, {(device_id, time): merged for device_id, time, merged in result}, len(readings))


def _combine(readings):
    """``({(device_id, time): _Row}, conflicts)``: the batch's readings combined per device and time in body order,
    and a 409 problem for each metric of a reading that an earlier reading of its device and time holds with
    another value."""
    rows = {}
    conflicts = []
    for reading in readings:
        key = (reading.device_id, reading.time)
        row = rows.get(key)
        if row is None:
            rows[key] = _Row(reading)
            continue
        row.readings.append(reading)
        clashing = [
            name
            for name, value in reading.metrics.items()
            if name in row.metrics and not same_value(row.metrics[name], value)
        ]
        for name in clashing:
            first = next(earlier for earlier in row.readings if name in earlier.metrics)
            conflicts.append(_conflict(reading, name, f"the batch's reading {pointer(first.index)}"))
        if not clashing and reading.metrics.keys() - row.metrics.keys():
            row.metrics = {**row.metrics, **reading.metrics}
            row.merged += 1
    return rows, conflicts


def same_value(a, b):
    """Whether two metric values are the same JSON value, as jsonb equality decides: numbers numerically (21 and
    21.0), booleans apart from numbers (Python's True == 1 is not JSON's), objects key by key."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _stored_conflicts(rows, error):
    """The 409 problems of a statement refused by a conflict: one per (reading, metric) contradicting the stored
    reading of its device and time, found with one query. ``error`` (the database's own message) stands in should
    the stored readings have gone since (a device deleted meanwhile)."""
    keys = list(rows)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.device_id::text, t.time, t.metrics::text FROM telemetry t"
            " JOIN unnest(%s::uuid[], %s::timestamptz[]) k(device_id, time)"
            " ON t.device_id = k.device_id AND t.time = k.time",
            [[device_id for device_id, _ in keys], [time for _, time in keys]],
        )
        stored = {(device_id, time): orjson.loads(metrics) for device_id, time, metrics in cursor.fetchall()}
    conflicts = [
        (reading.index or 0, _conflict(reading, name, "the stored reading"))
        for key, row in rows.items()
        if key in stored
        for reading in row.readings
        for name, value in reading.metrics.items()
        if name in stored[key] and not same_value(stored[key][name], value)
    ]
    if not conflicts:
        return [{"pointer": "", "detail": error.diag.message_primary, "code": "reading_conflict"}]
    conflicts.sort(key=lambda entry: entry[0])  # body order (stable: a reading's metrics in its order)
    return [problem for _, problem in conflicts]


def _conflict(reading, name, other):
    """The 409 problem of a reading's metric that ``other`` of its device and time holds with another value."""
    return {
        "pointer": pointer(reading.index, "metrics", name),
        "detail": f'The metric "{name}" has another value in {other} of this device and time; readings of one device'
        " and time merge only when the metrics they share are equal.",
        "code": "reading_conflict",
    }


def _count_groups(rows, outcomes, total):
    """Counts a request's readings from each row's outcome (merged: True, inserted: False, a duplicate: absent): the
    first reading of a row counts as the row did, each later one of the batch as merged if it added metrics to the
    earlier ones, else as a duplicate — all of them when the row added nothing."""
    accepted = merged = 0
    for key, row in rows.items():
        outcome = outcomes.get(key)
        if outcome is None:
            continue
        accepted += not outcome
        merged += outcome + row.merged
    return Ingested(accepted, merged, total - accepted - merged)


def insert_readings_parameters(rows, key_hash=NO_KEY):
    """The ingest statements' parameters: ``rows`` (the JSON text of its readings), the hash of the request's device
    key (NO_KEY without one), the start of the current rate window, the requests a device may send in it, and what
    the request adds to each of its devices' count (1)."""
    requests, period = settings.INGEST_DEVICE_RATE
    window_start = datetime.fromtimestamp(time.time() // period * period, UTC)
    return [rows, key_hash, window_start, requests, 1]


class _DeviceLookup:
    """The devices of a refused request, looked up once: ``{device_id: KnownDevice}`` of those among ``device_ids``
    that exist (validation's ``known_devices``), and which of them are keyed with a key other than the request's."""

    def __init__(self, key_hash):
        self.key_hash = key_hash
        self.unauthenticated = []  # (device_id, ingest_key_id)

    def __call__(self, device_ids):
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT d.id::text, d.status, k.id, k.key_hash,
                    CASE WHEN t.strict_metrics THEN t.name END,
                    CASE WHEN t.strict_metrics THEN ARRAY(SELECT m ->> 'name' FROM jsonb_array_elements(t.metrics) m)
                    END
                FROM devices d
                JOIN device_types t ON t.id = d.device_type_id
                LEFT JOIN ingest_keys k ON k.id = d.ingest_key_id
                WHERE d.id = ANY(%s::uuid[])
                """,
                [list(device_ids)],
            )
            rows = cursor.fetchall()
        presented = self.key_hash
        self.unauthenticated = [
            (device_id, key_id)
            for device_id, _, key_id, key_hash, _, _ in sorted(rows)
            if key_id is not None and not hmac.compare_digest(bytes(key_hash), presented)
        ]
        return {
            device_id: KnownDevice(status, strict_type, frozenset(declared or ()))
            for device_id, status, _, _, strict_type, declared in rows
        }

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
    """Whether the INSERT failed on a device: one it nulled out (unknown, not ingesting, unauthenticated, over its
    rate, or sending a metric its strict type doesn't declare), or one deleted while the statement ran (the foreign
    keys)."""
    pgcode = getattr(error, "pgcode", None)
    if pgcode == NOT_NULL_VIOLATION:
        return error.diag.column_name == "device_id"
    return pgcode == FOREIGN_KEY_VIOLATION
