"""The aggregates, the retention settings and the refresh windows they imply: the same on both editions.

Refresh windows never reach data the source no longer keeps: refreshing a range whose source rows were dropped
deletes the aggregate rows of that range. Each aggregate's window therefore starts at least one of its buckets
plus ``RETENTION_MARGIN`` inside its source's retention.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings

HYPERTABLE = "telemetry"


# Slack between a refresh window and the source's retention horizon: the window is computed a moment before the
# refresh reads, and a refresh may widen an invalidated range to whole buckets.
RETENTION_MARGIN = timedelta(hours=1)


# How often the worker's late-data refresh runs (telemetry/tasks.py; with TSL, hourly; the Apache rollups every
# minute). A reading ingest accepts must still lie inside every refresh window when the next one runs.
LATE_DATA_REFRESH_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Aggregate:
    """A continuous aggregate and its refresh policy.

    ``start_offset`` is the preferred start of the policy's window; it is shortened when the source keeps less
    (see ``refresh_windows``). Data older than the window is materialized by ``refresh_late_data``.
    """

    name: str
    source: str
    bucket: timedelta
    start_offset: timedelta
    end_offset: timedelta
    schedule_interval: timedelta


# Ordered from the source up: a refresh of one level invalidates the next, so refreshing in this order
# propagates a late reading to all three in one pass.
AGGREGATES = (
    # Every 5 minutes over the last 2 hours; the current minute stays real-time (computed at query time).
    Aggregate(
        name="telemetry_1m",
        source="telemetry",
        bucket=timedelta(minutes=1),
        start_offset=timedelta(hours=2),
        end_offset=timedelta(minutes=1),
        schedule_interval=timedelta(minutes=5),
    ),
    # Every 30 minutes over the last 2 days of the 1-minute aggregate; the current hour stays real-time.
    Aggregate(
        name="telemetry_1h",
        source="telemetry_1m",
        bucket=timedelta(hours=1),
        start_offset=timedelta(days=2),
        end_offset=timedelta(hours=1),
        schedule_interval=timedelta(minutes=30),
    ),
    # Hourly over the last 3 days of the hourly aggregate; yesterday is final an hour after midnight UTC.
    Aggregate(
        name="telemetry_1d",
        source="telemetry_1h",
        bucket=timedelta(days=1),
        start_offset=timedelta(days=3),
        end_offset=timedelta(hours=1),
        schedule_interval=timedelta(hours=1),
    ),
)


RETENTION_SETTING = "TELEMETRY_RETENTION_DAYS"


COMPRESS_SETTING = "TELEMETRY_COMPRESS_AFTER_DAYS"


AGGREGATE_RETENTION_SETTING = "TELEMETRY_AGGREGATE_RETENTION_DAYS"


# Which setting decides how long each relation keeps its data.
RETENTION_SETTING_OF = {
    "telemetry": RETENTION_SETTING,
    "telemetry_1m": RETENTION_SETTING,
    "telemetry_1h": AGGREGATE_RETENTION_SETTING,
    "telemetry_1d": AGGREGATE_RETENTION_SETTING,
    # The Apache build's rollup stores keep what the aggregate they serve keeps.
    "telemetry_rollup.store_1m": RETENTION_SETTING,
    "telemetry_rollup.store_1h": AGGREGATE_RETENTION_SETTING,
    "telemetry_rollup.store_1d": AGGREGATE_RETENTION_SETTING,
}


class PolicySettingsError(ValueError):
    """The retention and compression settings contradict each other."""


def configured():
    """The retention keyword arguments of the functions below, from the Django settings."""
    return {
        "retention_days": settings.TELEMETRY_RETENTION_DAYS,
        "compress_after_days": settings.TELEMETRY_COMPRESS_AFTER_DAYS,
        "aggregate_retention_days": settings.TELEMETRY_AGGREGATE_RETENTION_DAYS,
    }


def retention_periods(*, retention_days, aggregate_retention_days):
    """How long each relation keeps its data: raw and 1-minute for the raw retention, 1h and 1d longer."""
    return {
        relation: timedelta(days=retention_days if setting == RETENTION_SETTING else aggregate_retention_days)
        for relation, setting in RETENTION_SETTING_OF.items()
    }


def refresh_windows(*, retention_days, aggregate_retention_days):
    """``{aggregate name: (start_offset, end_offset)}`` of each refresh policy, inside its source's retention.

    Raises PolicySettingsError when a source keeps too little for the two buckets a policy window must span.
    """
    kept = retention_periods(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    windows = {}
    for aggregate in AGGREGATES:
        safe_start = kept[aggregate.source] - aggregate.bucket - RETENTION_MARGIN
        start = min(aggregate.start_offset, safe_start)
        # TimescaleDB refuses a policy window shorter than two buckets.
        if start - aggregate.end_offset < 2 * aggregate.bucket:
            setting = RETENTION_SETTING_OF[aggregate.source]
            needed = aggregate.end_offset + 3 * aggregate.bucket + RETENTION_MARGIN
            raise PolicySettingsError(
                f"{setting}={kept[aggregate.source].days} is too short for the refresh window of "
                f"{aggregate.name}, which aggregates {aggregate.source}: it must be at least "
                f"{math.ceil(needed / timedelta(days=1))} days."
            )
        windows[aggregate.name] = (start, aggregate.end_offset)
    return windows


def late_data_windows(now, *, retention_days, aggregate_retention_days):
    """``{aggregate name: (start, end)}`` that the late-data refresh (``refresh_late_data``, TSL) refreshes at
    ``now``: each level over what its source keeps, minus one bucket and ``RETENTION_MARGIN``."""
    kept = retention_periods(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    return {
        aggregate.name: (
            now - (kept[aggregate.source] - aggregate.bucket - RETENTION_MARGIN),
            now - aggregate.end_offset,
        )
        for aggregate in AGGREGATES
    }


def oldest_countable(now, *, retention_days, aggregate_retention_days):
    """The oldest reading time that every aggregate level still counts, on either edition, for a reading that
    arrives at ``now``: ingest refuses older readings (what it accepts, the aggregates count).

    The next late-data refresh runs up to ``LATE_DATA_REFRESH_EVERY`` later (plus ``RETENTION_MARGIN`` for a run that
    starts late or takes long); the reading's buckets must then still be refreshed: with TSL, whole buckets inside
    each level's late-data window (a refresh rounds its window inwards to whole buckets); on Apache, nothing
    before the first whole UTC day the raw retention keeps (the horizon of telemetry_rollup.refresh()).
    """
    later = now + LATE_DATA_REFRESH_EVERY + RETENTION_MARGIN
    windows = late_data_windows(later, retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    bounds = [_bucket_start(windows[a.name][0], a.bucket, up=True) for a in AGGREGATES]
    first_whole_day = _bucket_start(later - timedelta(days=retention_days), timedelta(days=1)) + timedelta(days=1)
    return max([*bounds, first_whole_day])


def _bucket_start(moment, width, *, up=False):
    """The start of the UTC-aligned bucket of ``width`` holding ``moment``; with ``up``, the first starting at or
    after it."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + (moment - epoch) // width * width
    return start + width if up and start < moment else start


def validate_settings(*, retention_days, compress_after_days, aggregate_retention_days):
    """Raises PolicySettingsError, naming the environment variables, when the settings can't work together."""
    if retention_days < 1:
        raise PolicySettingsError(f"{RETENTION_SETTING} must be at least 1 day, not {retention_days}.")
    if not 0 <= compress_after_days < retention_days:
        raise PolicySettingsError(
            f"{COMPRESS_SETTING} ({compress_after_days}) must be at least 0 and less than {RETENTION_SETTING} "
            f"({retention_days}): chunks are compressed while they are kept, not after they are dropped."
        )
    if aggregate_retention_days < retention_days:
        raise PolicySettingsError(
            f"{AGGREGATE_RETENTION_SETTING} ({aggregate_retention_days}) must be at least {RETENTION_SETTING} "
            f"({retention_days}): the hourly and daily aggregates are computed from what the raw data keeps."
        )
    refresh_windows(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)


def human_duration(value):
    """``timedelta`` as people write it: ``90 days``, ``1 day``, ``2 h``, ``5 min``."""
    if value >= timedelta(days=1) and value % timedelta(days=1) == timedelta(0):
        return f"{value.days} day{'s' if value.days > 1 else ''}"
    for unit, size in (("h", timedelta(hours=1)), ("min", timedelta(minutes=1))):
        if value >= size and value % size == timedelta(0):
            return f"{value // size} {unit}"
    return str(value)
