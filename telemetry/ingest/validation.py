"""The ingest rules, checked in plain Python on the parsed body (called by telemetry.ingest.services).

This is the hot path: no serializer and no model instance per reading. Every problem of the body is collected,
each with a JSON pointer into it (``/3/timestamp`` in a batch, ``/timestamp`` for a single reading), because a
batch is all-or-nothing and its sender needs the whole list to fix it.
"""

import math
import re
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings

from iothub.api.formats import UTC_TIME, UUID
from iothub.api.problems import json_pointer
from telemetry.models import INGESTING_STATUSES, METRIC_NAME_REGEX
from telemetry.timescale.retention import oldest_countable

MAX_BATCH = 1000
MAX_METRICS = 100
MAX_STRING_LENGTH = 256
# Objects inside metrics may nest this deep: {"a": {"b": {"c": {"d": 1}}}} is the deepest accepted.
MAX_DEPTH = 3
MAX_INTEGER = 2**53  # beyond it, JavaScript and double-based consumers silently lose precision
# The largest magnitude of a number, so that no aggregate sum can overflow double precision (docs/operations.md,
# "Huge values"): a sum over one device and metric, at any level, bucket or API interval, has at most 2^63 terms
# (readings are unique per device and time, a microsecond count that timestamptz keeps in 64 bits), and
# 2^63 * 1e288 ≈ 9.2e306 < 1.797e308. The aggregates' SQL skips bigger values stored by SQL.
MAX_MAGNITUDE = 1e288
MAX_FUTURE = timedelta(minutes=5)

FIELDS = frozenset({"device_id", "timestamp", "metrics"})
_valid_name = re.compile(METRIC_NAME_REGEX).fullmatch


class Reading(NamedTuple):
    """A valid reading; ``index`` is its position in a batch, None for a single reading."""

    index: int | None
    device_id: str  # lowercase canonical UUID
    time: datetime
    metrics: dict


class KnownDevice(NamedTuple):
    """A device of a refused request as the database has it: its status and, when its type has strict metrics, the
    type's name and the metric names it declares (``strict_type`` None otherwise)."""

    status: str
    strict_type: str | None = None
    declared: frozenset = frozenset()


def pointer(index, *parts):
    return json_pointer(*parts) if index is None else json_pointer(index, *parts)


def _error(errors, index, parts, detail, code):
    errors.append((-1 if index is None else index, {"pointer": pointer(index, *parts), "detail": detail, "code": code}))


def validate_readings(payload, *, now, known_devices):
    """``(readings, errors)`` for a parsed body: one reading object or an array of 1..1000 of them.

    ``errors`` is a list of ``{"pointer", "detail", "code"}`` in body order; ``readings`` is meaningful only when
    there are none. The devices are not looked up when the body is otherwise valid: the INSERT itself refuses
    readings of unknown or non-ingesting devices and undeclared metrics of strict types, which saves a round trip
    per request. When the body is refused anyway, ``known_devices(device_ids)`` (one query: ``{device_id:
    KnownDevice}`` of those that exist) adds the device problems so that every problem is listed at once.
    """
    errors = []
    if isinstance(payload, dict):
        items = [(None, payload)]
    elif isinstance(payload, list):
        if not 1 <= len(payload) <= MAX_BATCH:
            detail = f"A batch holds 1 to {MAX_BATCH} readings; this one has {len(payload)}."
            return [], [{"pointer": "", "detail": detail, "code": "batch_size"}]
        items = enumerate(payload)
    else:
        detail = "Expected a reading object or an array of readings."
        return [], [{"pointer": "", "detail": detail, "code": "invalid"}]

    oldest = oldest_countable(
        now,
        retention_days=settings.TELEMETRY_RETENTION_DAYS,
        aggregate_retention_days=settings.TELEMETRY_AGGREGATE_RETENTION_DAYS,
    )
    newest = now + MAX_FUTURE
    readings = []
    # (index, device_id, metrics object or None) of every well-formed device_id, checked against the database below
    device_refs = []
    for index, item in items:
        if not isinstance(item, dict):
            _error(errors, index, (), "A reading must be an object.", "invalid")
            continue
        if not item.keys() <= FIELDS:
            for name in sorted(item.keys() - FIELDS):
                _error(errors, index, (name,), "Unknown field.", "unknown_field")
        device_id = _check_device_id(item, index, errors)
        time = _check_timestamp(item, index, oldest, newest, errors)
        metrics = _check_metrics(item, index, errors)
        if device_id is not None:
            raw_metrics = item.get("metrics")
            device_refs.append((index, device_id, raw_metrics if isinstance(raw_metrics, dict) else None))
        if device_id is not None and time is not None and metrics is not None:
            readings.append(Reading(index, device_id, time, metrics))

    if errors:
        _device_errors(device_refs, known_devices, errors)
        return [], _in_body_order(errors)
    return readings, []


def device_problems(readings, known_devices):
    """The problems of readings whose device is unknown or may not send telemetry, or whose metrics its strict type
    does not declare, in body order."""
    errors = []
    refs = [(reading.index, reading.device_id, reading.metrics) for reading in readings]
    _device_errors(refs, known_devices, errors)
    return _in_body_order(errors)


def _in_body_order(errors):
    """The problems sorted by reading (stable: each reading's problems stay in the order found)."""
    errors.sort(key=lambda entry: entry[0])
    return [error for _, error in errors]


def _device_errors(device_refs, known_devices, errors):
    """Adds a problem for each ``(index, device_id, metrics)`` naming no device or one that may not send telemetry,
    and for each metric (of a metrics object, None if there is none) that the device's strict type doesn't
    declare."""
    if not device_refs:
        return
    devices = known_devices({device_id for _, device_id, _ in device_refs})
    for index, device_id, metrics in device_refs:
        device = devices.get(device_id)
        if device is None:
            _error(errors, index, ("device_id",), "No device has this id.", "unknown_device")
        elif device.status not in INGESTING_STATUSES:
            detail = f"The device is {device.status}; only active devices and devices in maintenance send telemetry."
            _error(errors, index, ("device_id",), detail, "device_not_ingesting")
        elif device.strict_type is not None and metrics:
            for name in metrics:
                if name not in device.declared and _valid_name(name):  # an invalid name has its own problem
                    _error(errors, index, ("metrics", name), _undeclared(device, name), "undeclared_metric")


def _undeclared(device, name):
    return (
        f'The device type "{device.strict_type}" has strict metrics and declares no metric "{name}": it declares '
        f"{', '.join(sorted(device.declared))}. Declare the metric on the type, or turn strict metrics off."
    )


def _check_device_id(item, index, errors):
    device_id = item.get("device_id")
    if "device_id" not in item:
        _error(errors, index, ("device_id",), "This field is required.", "required")
    elif not isinstance(device_id, str) or not UUID.fullmatch(device_id):
        _error(errors, index, ("device_id",), "Must be a UUID (8-4-4-4-12 hex digits).", "invalid")
    else:
        return device_id.lower()
    return None


def _check_timestamp(item, index, oldest, newest, errors):
    timestamp = item.get("timestamp")
    if "timestamp" not in item:
        _error(errors, index, ("timestamp",), "This field is required.", "required")
        return None
    if not isinstance(timestamp, str) or not UTC_TIME.fullmatch(timestamp):
        detail = "Must be an RFC 3339 UTC time ending in Z or +00:00, with at most 6 fractional digits."
        _error(errors, index, ("timestamp",), detail, "invalid")
        return None
    try:
        time = datetime.fromisoformat(timestamp)
    except ValueError:  # the shape is right but the date is not: 2026-02-30, 24:00:00, a leap second
        _error(errors, index, ("timestamp",), "Not a valid date and time.", "invalid")
        return None
    if time > newest:
        _error(errors, index, ("timestamp",), "More than 5 minutes in the future.", "future")
        return None
    if time < oldest:
        detail = (
            f"Older than {oldest.isoformat().replace('+00:00', 'Z')}, the oldest time the aggregates still count"
            f" (the raw retention is {settings.TELEMETRY_RETENTION_DAYS} days)."
        )
        _error(errors, index, ("timestamp",), detail, "too_old")
        return None
    return time


def _check_metrics(item, index, errors):
    """The reading's ``metrics`` when it is a valid, non-empty metrics object, else None."""
    if "metrics" not in item:
        _error(errors, index, ("metrics",), "This field is required.", "required")
        return None
    metrics = item["metrics"]
    if not isinstance(metrics, dict):
        _error(errors, index, ("metrics",), "Must be an object of metric names to values.", "invalid")
        return None
    if not metrics:
        _error(errors, index, ("metrics",), "Must hold at least one metric.", "empty")
        return None
    count = len(errors)
    _check_object(metrics, index, ("metrics",), 0, errors)
    return metrics if len(errors) == count else None


def _check_object(obj, index, parts, depth, errors):
    """The rules every metrics object follows, nested ones included.

    Run for every metric of every reading (a batch of 1,000 readings of 3 metrics: 3,000 times), so the valid case
    does the least: the most common types first, one comparison per number, the pointer built only for a problem.
    """
    if len(obj) > MAX_METRICS:
        _error(errors, index, parts, f"At most {MAX_METRICS} keys; this object has {len(obj)}.", "too_many_keys")
    for key, value in obj.items():
        if not _valid_name(key):
            detail = "Invalid name: a letter or _ then up to 63 letters, digits, _, . or -."
            _error(errors, index, (*parts, key), detail, "invalid_name")
        value_type = type(value)
        if value_type is float:
            # False for NaN and the infinities too, which the branch below tells apart.
            if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
                if not math.isfinite(value):
                    _error(errors, index, (*parts, key), "Numbers must be finite.", "invalid")
                else:
                    detail = f"Numbers must lie within ±{MAX_MAGNITUDE:g}, so that no aggregate sum can overflow."
                    _error(errors, index, (*parts, key), detail, "out_of_range")
        elif value_type is int:
            if not -MAX_INTEGER <= value <= MAX_INTEGER:
                _error(errors, index, (*parts, key), "Integers must lie within ±2^53.", "out_of_range")
        elif value_type is bool:
            pass
        elif value_type is str:
            if len(value) > MAX_STRING_LENGTH:
                detail = f"Strings hold at most {MAX_STRING_LENGTH} characters."
                _error(errors, index, (*parts, key), detail, "max_length")
            elif "\x00" in value:  # PostgreSQL's jsonb can't store it
                _error(errors, index, (*parts, key), "Strings may not contain U+0000.", "invalid")
        elif value_type is dict:
            path = (*parts, key)
            if depth == MAX_DEPTH:
                _error(errors, index, path, f"Objects nest at most {MAX_DEPTH} deep inside metrics.", "max_depth")
            else:
                _check_object(value, index, path, depth + 1, errors)
        elif value is None:
            _error(errors, index, (*parts, key), "null is not a metric value.", "null")
        else:
            detail = "Values are numbers, booleans, strings or objects; arrays are not accepted."
            _error(errors, index, (*parts, key), detail, "invalid")
