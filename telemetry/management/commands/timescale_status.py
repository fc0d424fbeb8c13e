"""``manage.py timescale_status``: what a DBA wants to see first, from the timescaledb_information views.

Every view used here exists on both editions; on the Apache build the aggregates and policy sections are just
shorter. Timestamps are printed in UTC, as text, so ``-infinity`` (never run, nothing materialized) prints too.
"""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand
from django.db import connection

from iothub import edition as iothub_edition
from telemetry import timescale

VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"

HYPERTABLES = """
SELECT h.hypertable_name, h.num_chunks, pg_size_pretty(hypertable_size(r.relation)), h.compression_enabled,
       s.segmentby, s.orderby
FROM timescaledb_information.hypertables h
CROSS JOIN LATERAL (SELECT (quote_ident(h.hypertable_schema) || '.' || quote_ident(h.hypertable_name))::regclass)
  AS r(relation)
LEFT JOIN timescaledb_information.hypertable_compression_settings s ON s.hypertable = r.relation
ORDER BY h.hypertable_schema, h.hypertable_name
"""

# A continuous aggregate's chunks belong to its materialization hypertable: shown under the view's name.
CHUNKS = """
SELECT coalesce(c.view_name, ch.hypertable_name) AS relation, count(*),
       date_trunc('second', min(ch.range_start) AT TIME ZONE 'UTC')::text,
       date_trunc('second', max(ch.range_end) AT TIME ZONE 'UTC')::text,
       count(*) FILTER (WHERE ch.is_compressed)
FROM timescaledb_information.chunks ch
LEFT JOIN timescaledb_information.continuous_aggregates c
  ON c.materialization_hypertable_schema = ch.hypertable_schema
 AND c.materialization_hypertable_name = ch.hypertable_name
GROUP BY 1
ORDER BY 1
"""

# Our aggregates, whatever form they take: continuous aggregate (TSL), plain view (Apache) or missing.
AGGREGATES = """
SELECT n.name, to_regclass(n.name) IS NOT NULL, ca.mat_hypertable_id IS NOT NULL, c.materialized_only,
       CASE WHEN ca.mat_hypertable_id IS NOT NULL THEN
         date_trunc('second', _timescaledb_functions.to_timestamp(
           _timescaledb_functions.cagg_watermark(ca.mat_hypertable_id)) AT TIME ZONE 'UTC')::text
       END,
       CASE WHEN ca.mat_hypertable_id IS NOT NULL THEN
         pg_size_pretty(hypertable_size((quote_ident(c.materialization_hypertable_schema) || '.'
                                         || quote_ident(c.materialization_hypertable_name))::regclass))
       END
FROM unnest(%s::text[]) WITH ORDINALITY AS n(name, position)
LEFT JOIN _timescaledb_catalog.continuous_agg ca
  ON ca.user_view_schema = current_schema() AND ca.user_view_name = n.name
LEFT JOIN timescaledb_information.continuous_aggregates c
  ON c.view_schema = current_schema() AND c.view_name = n.name
ORDER BY n.position
"""

# The Apache rollup stores: hypertables, sized with their chunks.
STORE_SIZES = """
SELECT n.name, pg_size_pretty(hypertable_size(n.name::regclass))
FROM unnest(%s::text[]) AS n(name)
WHERE to_regclass(n.name) IS NOT NULL
"""

# Policies and other jobs; a continuous aggregate's jobs are shown under the view's name.
JOBS = """
SELECT j.job_id, j.application_name, j.proc_name, coalesce(c.view_name, j.hypertable_name) AS relation,
       j.schedule_interval::text, j.config::text, s.job_status,
       date_trunc('second', s.last_run_started_at AT TIME ZONE 'UTC')::text AS last_run, s.last_run_status,
       date_trunc('second', s.next_start AT TIME ZONE 'UTC')::text AS next_start, s.total_runs, s.total_failures
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN timescaledb_information.continuous_aggregates c
  ON c.materialization_hypertable_schema = j.hypertable_schema
 AND c.materialization_hypertable_name = j.hypertable_name
ORDER BY j.job_id
"""


class Command(BaseCommand):
    help = (
        "Prints TimescaleDB's edition and version, the hypertables (chunks, size, compression), the chunk ranges, "
        "the telemetry aggregates (continuous or plain view, watermark) and the jobs with their last and next run."
    )

    def handle(self, *args, **options):
        with connection.cursor() as cursor:
            cursor.execute(VERSION)
            (version,) = cursor.fetchone()
            # The edition the database was migrated under (iothub.edition), and a warning if the library differs.
            edition = timescale.edition()
            served = iothub_edition.served()
            features = (
                "policies, compression, continuous aggregates"
                if edition == timescale.TIMESCALE
                else (
                    "no policies, compression or continuous aggregates; the worker's enforce_retention does retention"
                )
            )
            self.stdout.write(f"TimescaleDB {version}, edition {edition} ({features})")
            if served != edition:
                self.stdout.write(f"WARNING: {iothub_edition.mismatch_message(edition, served)}")

            self._section("Hypertables")
            cursor.execute(HYPERTABLES)
            for name, chunks, size, compressed, segmentby, orderby in cursor.fetchall():
                compression = (
                    f"compression on (segment by {segmentby or '-'}, order by {orderby or '-'})"
                    if compressed
                    else "compression off"
                )
                self.stdout.write(f"  {name}: {chunks} chunks, {size}, {compression}")

            self._section("Chunks (UTC)")
            cursor.execute(CHUNKS)
            for relation, count, first, last, compressed in cursor.fetchall():
                self.stdout.write(f"  {relation}: {count} chunks from {first} to {last}, {compressed} compressed")

            rollups = timescale.rollup_state(cursor)
            sizes = {}
            if rollups is not None:
                cursor.execute(STORE_SIZES, [list(timescale.ROLLUP_STORES.values())])
                sizes = dict(cursor.fetchall())

            self._section("Aggregates")
            cursor.execute(AGGREGATES, [[aggregate.name for aggregate in timescale.AGGREGATES]])
            for name, exists, continuous, materialized_only, watermark, size in cursor.fetchall():
                if continuous:
                    mode = "materialized only" if materialized_only else "real-time"
                    self.stdout.write(
                        f"  {name}: continuous aggregate, {mode}, watermark {watermark} UTC, {size} materialized"
                    )
                elif exists and rollups is not None:
                    store = timescale.ROLLUP_STORES[name]
                    self.stdout.write(
                        f"  {name}: plain view: closed buckets from {store} ({sizes.get(store, '-')}) below the "
                        "watermark, the rest computed at query time from the level below"
                    )
                elif exists:
                    self.stdout.write(f"  {name}: plain view, computed from the raw readings at query time")
                else:
                    self.stdout.write(f"  {name}: missing (migrations not applied?)")

            if rollups is not None:
                self._section("Rollups (Apache build; telemetry_rollup.state, UTC)")
                fence = (
                    f"moves to {self._utc(rollups['pending_watermark'])} once transactions below xid "
                    f"{rollups['fence']} have ended"
                    if rollups["fence"]
                    else "no move pending"
                )
                self.stdout.write(
                    f"  watermark {self._utc(rollups['watermark'])} ({fence}); "
                    f"late-data threshold {self._utc(rollups['threshold'])}"
                )
                waiting = f"  invalidations waiting: {rollups['invalidations']}"
                if rollups["invalidations"]:
                    waiting += f", oldest reading {self._utc(rollups['oldest_invalidation'])}"
                self.stdout.write(waiting)
                self.stdout.write(
                    f"  last refresh {self._utc(rollups['refreshed_at'])}, raw retention "
                    f"{timescale.human_duration(rollups['raw_retention'])}"
                )

            self._section("Jobs (UTC)")
            cursor.execute(JOBS)
            columns = [column.name for column in cursor.description]
            for job in (dict(zip(columns, row, strict=True)) for row in cursor.fetchall()):
                self.stdout.write(
                    f"  [{job['job_id']}] {job['application_name']}: {job['proc_name']} on {job['relation'] or '-'},"
                    f" every {job['schedule_interval']}, {job['job_status'] or '-'}"
                )
                self.stdout.write(f"      config {job['config'] or '-'}")
                self.stdout.write(
                    f"      last run {job['last_run'] or 'never'} ({job['last_run_status'] or '-'}),"
                    f" next start {job['next_start'] or '-'},"
                    f" {job['total_runs'] or 0} runs, {job['total_failures'] or 0} failures"
                )

    @staticmethod
    def _utc(moment):
        if moment is None:
            return "never"
        if isinstance(moment, datetime):
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return str(moment)  # -infinity

    def _section(self, title):
        self.stdout.write(f"\n{title}")
