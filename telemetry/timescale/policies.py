"""The community (TSL) edition: compression, retention and refresh policies kept equal to the settings, and the
refresh of readings that arrive too late for the refresh policies. Every function here needs TSL."""

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from psycopg2 import sql

from iothub.edition import TIMESCALE
from iothub.edition import current as current_edition
from telemetry.timescale.retention import (
    AGGREGATES,
    HYPERTABLE,
    human_duration,
    late_data_windows,
    refresh_windows,
    retention_periods,
    validate_settings,
)

# What `ALTER TABLE telemetry SET (timescaledb.compress, ...)` below declares, as the information views show it.
COMPRESS_SEGMENTBY = ["device_id"]


COMPRESS_ORDERBY = ["time DESC"]


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


class AggregatesMissing(Exception):
    """The continuous aggregates the policies are for do not exist (migrations not applied)."""


class PoliciesUnavailable(Exception):
    """The TimescaleDB build in use has no policies (Apache-2)."""


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
    if current_edition() != TIMESCALE:
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
    if current_edition() != TIMESCALE:
        raise PoliciesUnavailable(APACHE_MESSAGE)
    refreshed = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (now,) = cursor.fetchone()
        windows = late_data_windows(
            now, retention_days=retention_days, aggregate_retention_days=aggregate_retention_days
        )
        for aggregate in AGGREGATES:
            start, end = windows[aggregate.name]
            cursor.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", [aggregate.name, start, end])
            refreshed[aggregate.name] = (start, end)
    return refreshed
