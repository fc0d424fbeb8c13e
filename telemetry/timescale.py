"""TimescaleDB editions, retention, compression and refresh policies: the one place that knows them.

Two editions run this project (see docs/operations.md):

- ``timescale`` (the community/TSL build of the Docker image): ``apply_policies`` keeps a compression policy and a
  retention policy on ``telemetry``, a refresh and a retention policy on each continuous aggregate; the
  background scheduler runs them. ``refresh_late_data`` materializes readings that arrived too late for the
  refresh policies.
- ``apache`` (the Debian build): no policies, no compression, no continuous aggregates. The aggregates are views
  over rollups the project maintains itself (schema ``telemetry_rollup``, sql/README.md):
  ``refresh_rollups`` calls ``telemetry_rollup.refresh()``, which the worker runs every minute
  (``catch_up_rollups``). Retention is ``enforce_retention`` (``drop_chunks`` on telemetry and on the rollup
  stores), which the worker runs daily.

``refresh_aggregates`` brings the aggregates up to date now on either edition (``manage.py refresh_aggregates``,
``apply_timescale_policies``, tests).

Refresh windows never reach data the source no longer keeps: refreshing a range whose source rows were dropped
deletes the aggregate rows of that range. Each aggregate's window therefore starts at least one of its buckets
plus ``RETENTION_MARGIN`` inside its source's retention. The Apache refresh never recomputes a bucket older than
the first whole day the raw retention keeps."""

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from psycopg2 import sql

from iothub.edition import TIMESCALE
from iothub.edition import current as current_edition

HYPERTABLE = "telemetry"
# What `ALTER TABLE telemetry SET (timescaledb.compress, ...)` below declares, as the information views show it.
COMPRESS_SEGMENTBY = ["device_id"]
COMPRESS_ORDERBY = ["time DESC"]

# Slack between a refresh window and the source's retention horizon: the window is computed a moment before the
# refresh reads, and a refresh may widen an invalidated range to whole buckets.
RETENTION_MARGIN = timedelta(hours=1)


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

APACHE_MESSAGE = (
    "TimescaleDB is the Apache-2 build here: retention, compression and refresh policies are unavailable. "
    "telemetry_1m/1h/1d are views over rollups that the worker refreshes every minute (telemetry_rollup.refresh(), "
    "manage.py refresh_aggregates), and retention is enforced by the worker's daily enforce_retention task "
    "(manage.py enforce_retention)."
)

# add_*/remove_* functions and the proc_name of the job each policy kind creates (TimescaleDB 2.19).
_POLICY_FUNCTIONS = {
    "retention": ("add_retention_policy", "remove_retention_policy", "policy_retention"),
    "compression": ("add_compression_policy", "remove_compression_policy", "policy_compression"),
    "refresh": (
        "add_continuous_aggregate_policy",
        "remove_continuous_aggregate_policy",
        "policy_refresh_continuous_aggregate",
    ),
}


class PolicySettingsError(ValueError):
    """The retention and compression settings contradict each other."""


class AggregatesMissing(Exception):
    """The continuous aggregates the policies are for do not exist (migrations not applied)."""


class PoliciesUnavailable(Exception):
    """The TimescaleDB build in use has no policies (Apache-2)."""


class RollupsUnavailable(Exception):
    """The Apache rollups are not there: a TSL build (continuous aggregates instead), or migrations not applied."""


def edition():
    """The database's TimescaleDB edition, ``"timescale"`` or ``"apache"`` (recorded when migrated: iothub.edition)."""
    return current_edition()


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


@dataclass(frozen=True)
class _Policy:
    relation: str
    kind: str  # a key of _POLICY_FUNCTIONS
    # Arguments of the add_* function, which are also the keys of the job's config.
    config: dict[str, timedelta]
    # Passed to add_* and compared only when given; otherwise TimescaleDB's default schedule is kept.
    schedule_interval: timedelta | None = None

    def describe(self):
        parts = [f"{key} {human_duration(value)}" for key, value in self.config.items()]
        if self.schedule_interval is not None:
            parts.append(f"every {human_duration(self.schedule_interval)}")
        return f"{self.relation}: {self.kind} policy ({', '.join(parts)})"


def _desired_policies(*, retention_days, compress_after_days, aggregate_retention_days):
    kept = retention_periods(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    windows = refresh_windows(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    policies = [
        _Policy(HYPERTABLE, "compression", {"compress_after": timedelta(days=compress_after_days)}),
        _Policy(HYPERTABLE, "retention", {"drop_after": kept[HYPERTABLE]}),
    ]
    # Refresh policies before the aggregates' retention: a new, shorter retention must not meet an old, longer
    # refresh window.
    for aggregate in AGGREGATES:
        start, end = windows[aggregate.name]
        policies.append(
            _Policy(
                aggregate.name,
                "refresh",
                {"start_offset": start, "end_offset": end},
                schedule_interval=aggregate.schedule_interval,
            )
        )
    policies += [_Policy(aggregate.name, "retention", {"drop_after": kept[aggregate.name]}) for aggregate in AGGREGATES]
    return policies


def apply_policies(*, retention_days, compress_after_days, aggregate_retention_days):
    """Makes the database's compression settings and policies match the settings; returns what it changed.

    Idempotent: a policy that already matches is left alone (an empty list means nothing changed); one that
    differs is replaced. All changes are made in one transaction. Raises PolicySettingsError for contradictory
    settings, PoliciesUnavailable on the Apache build and AggregatesMissing before the migrations.
    """
    validate_settings(
        retention_days=retention_days,
        compress_after_days=compress_after_days,
        aggregate_retention_days=aggregate_retention_days,
    )
    if edition() != TIMESCALE:
        raise PoliciesUnavailable(APACHE_MESSAGE)
    policies = _desired_policies(
        retention_days=retention_days,
        compress_after_days=compress_after_days,
        aggregate_retention_days=aggregate_retention_days,
    )
    changes = []
    with transaction.atomic(), connection.cursor() as cursor:
        missing = {aggregate.name for aggregate in AGGREGATES} - set(continuous_aggregate_names(cursor))
        if missing:
            raise AggregatesMissing(
                f"Not continuous aggregates: {', '.join(sorted(missing))}. Run `manage.py migrate` first."
            )
        if _compression_settings(cursor) != (True, COMPRESS_SEGMENTBY, COMPRESS_ORDERBY):
            # Compression must be enabled before a compression policy can be added.
            cursor.execute(
                "ALTER TABLE telemetry SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time DESC')"
            )
            changes.append("telemetry: compression enabled (segment by device_id, order by time DESC)")
        for policy in policies:
            change = _ensure_policy(cursor, policy)
            if change:
                changes.append(change)
    return changes


def _compression_settings(cursor):
    """``(enabled, segmentby columns, orderby columns)`` of the telemetry hypertable."""
    cursor.execute(
        """
        SELECT h.compression_enabled,
               array(SELECT s.attname::text FROM timescaledb_information.compression_settings s
                     WHERE s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
                       AND s.segmentby_column_index IS NOT NULL
                     ORDER BY s.segmentby_column_index),
               array(SELECT s.attname || CASE WHEN s.orderby_asc THEN ' ASC' ELSE ' DESC' END
                     FROM timescaledb_information.compression_settings s
                     WHERE s.hypertable_schema = h.hypertable_schema AND s.hypertable_name = h.hypertable_name
                       AND s.orderby_column_index IS NOT NULL
                     ORDER BY s.orderby_column_index)
        FROM timescaledb_information.hypertables h
        WHERE h.hypertable_schema = current_schema() AND h.hypertable_name = %s
        """,
        [HYPERTABLE],
    )
    enabled, segmentby, orderby = cursor.fetchone()
    return enabled, segmentby, orderby


def _ensure_policy(cursor, policy):
    """Adds the policy, or replaces the existing one if it differs; returns a description of the change."""
    add, remove, proc_name = _POLICY_FUNCTIONS[policy.kind]
    # A continuous aggregate's jobs are attached to its materialization hypertable, not to the view.
    cursor.execute(
        sql.SQL(
            """
            SELECT j.job_id, j.schedule_interval, {configured}
            FROM timescaledb_information.jobs j
            LEFT JOIN timescaledb_information.continuous_aggregates c
              ON c.materialization_hypertable_schema = j.hypertable_schema
             AND c.materialization_hypertable_name = j.hypertable_name
            WHERE j.proc_name = %s
              AND coalesce(c.view_schema, j.hypertable_schema) = current_schema()
              AND coalesce(c.view_name, j.hypertable_name) = %s
            ORDER BY j.job_id
            """
        ).format(
            configured=sql.SQL(", ").join(
                sql.SQL("(j.config ->> {})::interval").format(sql.Literal(key)) for key in policy.config
            )
        ),
        [proc_name, policy.relation],
    )
    existing = cursor.fetchone()
    if existing is not None:
        _job_id, schedule_interval, *values = existing
        config_matches = dict(zip(policy.config, values, strict=True)) == policy.config
        if config_matches and policy.schedule_interval in (None, schedule_interval):
            return None
        cursor.execute(sql.SQL("SELECT {}(%s, if_exists => true)").format(sql.Identifier(remove)), [policy.relation])
    arguments = {**policy.config}
    if policy.schedule_interval is not None:
        arguments["schedule_interval"] = policy.schedule_interval
    cursor.execute(
        sql.SQL("SELECT {}(%s, {})").format(
            sql.Identifier(add),
            sql.SQL(", ").join(sql.SQL("{} => %s").format(sql.Identifier(name)) for name in arguments),
        ),
        [policy.relation, *arguments.values()],
    )
    return f"{policy.describe()} {'replaced' if existing else 'added'}"


def continuous_aggregate_names(cursor=None):
    """Names of the continuous aggregates in the current schema (none on the Apache build)."""
    query = (
        "SELECT view_name::text FROM timescaledb_information.continuous_aggregates"
        " WHERE view_schema = current_schema() ORDER BY view_name"
    )
    if cursor is None:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return [name for (name,) in cursor.fetchall()]
    cursor.execute(query)
    return [name for (name,) in cursor.fetchall()]


def enforce_retention(*, retention_days, compress_after_days, aggregate_retention_days):
    """Drops the chunks entirely older than each relation's retention now; returns ``{relation: [chunk, ...]}``.

    Works on both editions. On Apache it is the only retention there is: telemetry keeps the raw retention, and
    each rollup store the retention of the aggregate it serves (raw for 1 minute, aggregate retention for 1 hour
    and 1 day), so dropping raw chunks never takes the hourly and daily rollups with it. With TSL it does at once
    what the retention policies do on their schedule, the aggregates included, so retention holds even where the
    background scheduler is not running.
    """
    validate_settings(
        retention_days=retention_days,
        compress_after_days=compress_after_days,
        aggregate_retention_days=aggregate_retention_days,
    )
    kept = retention_periods(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    dropped = {}
    with connection.cursor() as cursor:
        relations = [
            HYPERTABLE,
            *(name for name in continuous_aggregate_names(cursor) if name in kept),
            *rollup_store_names(cursor),
        ]
        for relation in relations:
            cursor.execute("SELECT drop_chunks(%s, older_than => now() - %s)", [relation, kept[relation]])
            dropped[relation] = [chunk for (chunk,) in cursor.fetchall()]
    return dropped


def rollup_store_names(cursor):
    """The Apache rollup stores that exist (none with TSL), as schema-qualified names."""
    cursor.execute(
        "SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables"
        " WHERE hypertable_schema = %s ORDER BY hypertable_name",
        [ROLLUP_SCHEMA],
    )
    existing = {name for (name,) in cursor.fetchall()}
    return [store for store in ROLLUP_STORES.values() if store in existing]


def refresh_late_data(*, retention_days, compress_after_days, aggregate_retention_days):
    """Refreshes each continuous aggregate over everything its source keeps; returns the windows refreshed.

    A refresh policy never looks further back than its start_offset, so readings that arrive later than that
    (a device coming back online, a backfill) would never be materialized. Only invalidated ranges are
    recomputed, so this is cheap when nothing arrived late. Needs TSL; must run outside a transaction.
    """
    validate_settings(
        retention_days=retention_days,
        compress_after_days=compress_after_days,
        aggregate_retention_days=aggregate_retention_days,
    )
    if edition() != TIMESCALE:
        raise PoliciesUnavailable(APACHE_MESSAGE)
    kept = retention_periods(retention_days=retention_days, aggregate_retention_days=aggregate_retention_days)
    refreshed = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (now,) = cursor.fetchone()
        for aggregate in AGGREGATES:
            start = now - (kept[aggregate.source] - aggregate.bucket - RETENTION_MARGIN)
            end = now - aggregate.end_offset
            cursor.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", [aggregate.name, start, end])
            refreshed[aggregate.name] = (start, end)
    return refreshed


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


def refresh_aggregates(*, retention_days, compress_after_days, aggregate_retention_days):
    """Brings telemetry_1m/1h/1d up to date now, on either edition; returns ``{aggregate or "rollups": detail}``.

    TSL: ``refresh_late_data`` (each continuous aggregate over what its source keeps; outside a transaction).
    Apache: ``telemetry_rollup.refresh(wait_for_writers => true)`` in steps of ``ROLLUP_STEP`` of readings, each
    its own transaction (a big backlog never becomes one huge statement): every reading committed before the call
    and older than ``ROLLUP_BEHIND`` is in the stores afterwards, late ones included. Returns the last step.
    """
    settings = {
        "retention_days": retention_days,
        "compress_after_days": compress_after_days,
        "aggregate_retention_days": aggregate_retention_days,
    }
    if edition() == TIMESCALE:
        return refresh_late_data(**settings)
    steps = catch_up_rollups(**settings, wait_for_writers=True, budget_seconds=None)
    return {
        "rollups": RollupRefresh(
            steps[-1].watermark,
            steps[-1].threshold,
            steps[0].previous_watermark,
            sum(step.invalidated_spans for step in steps),
        )
    }


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


def human_duration(value):
    """``timedelta`` as people write it: ``90 days``, ``1 day``, ``2 h``, ``5 min``."""
    if value >= timedelta(days=1) and value % timedelta(days=1) == timedelta(0):
        return f"{value.days} day{'s' if value.days > 1 else ''}"
    for unit, size in (("h", timedelta(hours=1)), ("min", timedelta(minutes=1))):
        if value >= size and value % size == timedelta(0):
            return f"{value // size} {unit}"
    return str(value)
