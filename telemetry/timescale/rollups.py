"""The Apache-2 edition: the project's own rollups behind telemetry_1m/1h/1d (schema ``telemetry_rollup``,
sql/README.md), refreshed by ``telemetry_rollup.refresh()``: the worker every minute (``catch_up_rollups``), tests and
a DBA at once (``refresh_aggregates``). The Apache refresh never recomputes a bucket older than the first whole day
the raw retention keeps."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from telemetry.timescale.retention import validate_settings

# The Apache build's rollups (sql/README.md): the store behind each aggregate view.
ROLLUP_SCHEMA = "telemetry_rollup"


ROLLUP_STORES = {
    "telemetry_1m": "telemetry_rollup.store_1m",
    "telemetry_1h": "telemetry_rollup.store_1h",
    "telemetry_1d": "telemetry_rollup.store_1d",
}


# How far behind now the rollups' invalidation threshold stays: readings up to this late are ordinary ingest, not
# late data (devices batch and clocks drift). The views compute the last few minutes from raw readings.
ROLLUP_BEHIND = timedelta(minutes=5)


# The worker materializes a backlog (first start, worker down for a while) in steps of this much of readings, and
# for at most ROLLUP_BUDGET_SECONDS per run, so other tasks are not held up.
ROLLUP_STEP = timedelta(days=1)


ROLLUP_BUDGET_SECONDS = 20.0


class RollupsUnavailable(Exception):
    """The Apache rollups are not there: a TSL build (continuous aggregates instead), or migrations not applied."""


def rollup_store_names(cursor):
    """The Apache rollup stores that exist (none with TSL), as schema-qualified names."""
    cursor.execute(
        "SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s ORDER BY hypertable_name",
        [ROLLUP_SCHEMA],
    )
    existing = {name for (name,) in cursor.fetchall()}
    return [store for store in ROLLUP_STORES.values() if store in existing]


@dataclass(frozen=True)
class RollupRefresh:
    """What one ``telemetry_rollup.refresh()`` call did."""

    watermark: datetime
    threshold: datetime
    previous_watermark: datetime
    invalidated_spans: int

    @property
    def advanced(self):
        return self.watermark > self.previous_watermark

    def describe(self):
        return (
            f"watermark {_moment(self.watermark)} (was {_moment(self.previous_watermark)}), threshold "
            f"{_moment(self.threshold)}, {self.invalidated_spans} span(s) of late readings recomputed"
        )


def _moment(value):
    """A timestamp in UTC as text; ``-infinity`` (psycopg2 reads it as the first day of year 1) as such."""
    if value is None:
        return "never"
    if value.year == 1:
        return "-infinity"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _rollups_exist(cursor):
    cursor.execute("SELECT to_regprocedure('telemetry_rollup.refresh(interval, interval, boolean, interval)')")
    return cursor.fetchone()[0] is not None


def refresh_rollups(
    *, retention_days, compress_after_days, aggregate_retention_days, wait_for_writers=False, max_advance=None
):
    """One call of ``telemetry_rollup.refresh()`` (Apache build), in its own transaction unless one is open.

    Without ``wait_for_writers`` it takes no lock that writers wait for, and the watermark follows the threshold
    one call later (see the function's comment). With it, it waits for running writers, holds new ones back until
    it commits, and brings the stores up to ``ROLLUP_BEHIND`` before now at once: for startup, tests and a DBA.
    Raises RollupsUnavailable on a TSL build or before the migrations.
    """
    validate_settings(
        retention_days=retention_days,
        compress_after_days=compress_after_days,
        aggregate_retention_days=aggregate_retention_days,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if not _rollups_exist(cursor):
            raise RollupsUnavailable(
                "telemetry_rollup.refresh() does not exist: with TSL the aggregates are continuous aggregates; "
                "on the Apache build run `manage.py migrate` first."
            )
        cursor.execute(
            "SELECT * FROM telemetry_rollup.refresh(raw_retention => %s, behind => %s, wait_for_writers => %s,"
            " max_advance => %s)",
            [timedelta(days=retention_days), ROLLUP_BEHIND, wait_for_writers, max_advance],
        )
        return RollupRefresh(*cursor.fetchone())


def catch_up_rollups(*, budget_seconds=ROLLUP_BUDGET_SECONDS, step=ROLLUP_STEP, wait_for_writers=False, **settings):
    """Calls ``refresh_rollups`` in steps of ``step`` of readings, each in its own transaction, while the watermark
    advances and ``budget_seconds`` last (None: until done); returns the calls' results.

    The worker's run (lock-free, 20 s): a backlog is worked off over successive runs, and the views stay exact
    meanwhile (they compute what is not stored yet from raw readings). With ``wait_for_writers`` each step holds
    writers back only while it runs.
    """
    results = []
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    while True:
        result = refresh_rollups(**settings, wait_for_writers=wait_for_writers, max_advance=step)
        results.append(result)
        if not result.advanced or (deadline is not None and time.monotonic() >= deadline):
            return results


def rollup_state(cursor=None):
    """The Apache rollups' state row as a dict (watermark, threshold, pending_watermark, fence, raw_retention,
    refreshed_at) plus ``invalidations`` (log rows waiting) and ``oldest_invalidation``; None without rollups."""
    if cursor is None:
        with connection.cursor() as cursor:
            return rollup_state(cursor)
    if not _rollups_exist(cursor):
        return None
    cursor.execute(
        "SELECT s.watermark, s.threshold, s.pending_watermark, s.fence::text, s.raw_retention, s.refreshed_at,"
        " (SELECT count(*) FROM telemetry_rollup.invalidations),"
        " (SELECT min(low) FROM telemetry_rollup.invalidations)"
        " FROM telemetry_rollup.state s"
    )
    columns = [column.name for column in cursor.description]
    columns[-2:] = ["invalidations", "oldest_invalidation"]
    return dict(zip(columns, cursor.fetchone(), strict=True))
