"""The telemetry app's periodic tasks, run by ``manage.py run_worker`` (iothub.worker)."""

import logging
from datetime import timedelta

from iothub.edition import APACHE, TIMESCALE
from iothub.worker import periodic
from telemetry import timescale

logger = logging.getLogger(__name__)


@periodic("enforce_retention", every=timedelta(days=1), run_at_start=True)
def enforce_retention():
    """Drops chunks older than the retention settings, on both editions.

    On Apache this is the only retention. With TSL the retention policies do the same on TimescaleDB's own
    schedule; running it here too costs one catalog lookup per relation and keeps retention holding where the
    background scheduler is off (timescaledb.max_background_workers = 0, or a build that doesn't run jobs).
    """
    for relation, chunks in timescale.enforce_retention(**timescale.configured()).items():
        if chunks:
            logger.info("Retention: dropped %d chunk(s) of %s", len(chunks), relation)
            logger.debug("Dropped chunks of %s: %s", relation, ", ".join(chunks))


@periodic("refresh_late_telemetry", every=timescale.LATE_DATA_REFRESH_EVERY, run_at_start=True)
def refresh_late_telemetry():
    """Materializes readings that arrived older than the refresh policies' windows (TSL only).

    Registered on both editions because the edition is known only once connected; on Apache it does nothing:
    there, ``refresh_telemetry_rollups`` handles late readings every minute.
    """
    if timescale.edition() != TIMESCALE:
        return
    timescale.refresh_late_data(**timescale.configured())


@periodic("refresh_telemetry_rollups", every=timedelta(minutes=1), run_at_start=True)
def refresh_telemetry_rollups():
    """Keeps the Apache build's rollups up to date: closes the buckets of the last minute and recomputes those of
    late readings (``telemetry_rollup.refresh()``, lock-free). On TSL it does nothing: the continuous aggregates'
    refresh policies do that job.
    """
    if timescale.edition() != APACHE:
        return
    for result in timescale.catch_up_rollups(**timescale.configured()):
        if result.invalidated_spans:
            logger.info("Rollups: recomputed %d span(s) of late readings", result.invalidated_spans)
        if result.advanced:
            logger.debug("Rollups: watermark %s -> %s", result.previous_watermark, result.watermark)
