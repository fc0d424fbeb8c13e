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

The one entry point the rest of the code calls (``from telemetry import timescale``): the functions below, and
what the modules of each part export — ``retention`` (aggregates, settings, refresh windows: both editions),
``policies`` (the community edition) and ``rollups`` (the Apache edition). The edition is the database's recorded
one (``iothub.edition``)."""

from django.db import connection

from iothub.edition import APACHE, TIMESCALE
from iothub.edition import current as current_edition
from telemetry.timescale.policies import (
    APACHE_MESSAGE,
    COMPRESS_ORDERBY,
    COMPRESS_SEGMENTBY,
    AggregatesMissing,
    PoliciesUnavailable,
    apply_policies,
    continuous_aggregate_names,
    refresh_late_data,
)
from telemetry.timescale.retention import (
    AGGREGATE_RETENTION_SETTING,
    AGGREGATES,
    COMPRESS_SETTING,
    HYPERTABLE,
    LATE_DATA_REFRESH_EVERY,
    RETENTION_MARGIN,
    RETENTION_SETTING,
    RETENTION_SETTING_OF,
    Aggregate,
    PolicySettingsError,
    configured,
    human_duration,
    late_data_windows,
    oldest_countable,
    refresh_windows,
    retention_periods,
    validate_settings,
)
from telemetry.timescale.rollups import (
    ROLLUP_BEHIND,
    ROLLUP_BUDGET_SECONDS,
    ROLLUP_SCHEMA,
    ROLLUP_STEP,
    ROLLUP_STORES,
    RollupRefresh,
    RollupsUnavailable,
    catch_up_rollups,
    refresh_rollups,
    rollup_state,
    rollup_store_names,
)

__all__ = [
    "AGGREGATES",
    "AGGREGATE_RETENTION_SETTING",
    "APACHE",
    "APACHE_MESSAGE",
    "COMPRESS_ORDERBY",
    "COMPRESS_SEGMENTBY",
    "COMPRESS_SETTING",
    "HYPERTABLE",
    "LATE_DATA_REFRESH_EVERY",
    "RETENTION_MARGIN",
    "RETENTION_SETTING",
    "RETENTION_SETTING_OF",
    "ROLLUP_BEHIND",
    "ROLLUP_BUDGET_SECONDS",
    "ROLLUP_SCHEMA",
    "ROLLUP_STEP",
    "ROLLUP_STORES",
    "TIMESCALE",
    "Aggregate",
    "AggregatesMissing",
    "PoliciesUnavailable",
    "PolicySettingsError",
    "RollupRefresh",
    "RollupsUnavailable",
    "apply_policies",
    "catch_up_rollups",
    "configured",
    "continuous_aggregate_names",
    "edition",
    "enforce_retention",
    "human_duration",
    "late_data_windows",
    "oldest_countable",
    "refresh_aggregates",
    "refresh_late_data",
    "refresh_rollups",
    "refresh_windows",
    "retention_periods",
    "rollup_state",
    "rollup_store_names",
    "validate_settings",
]


def edition():
    """The database's TimescaleDB edition, ``"timescale"`` or ``"apache"`` (recorded when migrated: iothub.edition)."""
    return current_edition()


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
