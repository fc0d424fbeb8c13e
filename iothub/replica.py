"""The optional read replica: telemetry reads on a PostgreSQL streaming replica (a hot standby), the rest on the
primary.

``DATABASE_REPLICA_URL`` names the replica (settings: the ``replica`` database). Only the telemetry query endpoints
(raw readings, latest, aggregates) opt in, with ``telemetry_reads_from_replica()`` around the request; within it the
router sends reads of ``Telemetry`` there, and raw SQL over telemetry asks ``telemetry_database()`` for its
connection. Everything else reads and writes on the primary: devices, users and permissions (so a device created a
moment ago is found even while the replica lags), rules, events, notifications, health. A write in the request
ends its replica reads: what follows reads the primary, which has the write.

A replica that does not answer is not an outage: its reads fall back to the primary, and the replica is tried
again ``DB_REPLICA_RETRY_SECONDS`` later (per process). The lag (docs/scaling.md) is reported by the health
endpoint, to admins.
"""

import contextlib
import contextvars
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router

REPLICA = "replica"
# Models whose reads may be served by the replica, within telemetry_reads_from_replica().
REPLICA_MODELS = {"telemetry.telemetry"}

logger = logging.getLogger(__name__)


@dataclass
class _Reads:
    # None until the first telemetry read asks: a request refused before it never touches the replica.
    on_replica: bool | None = None

    def use_replica(self):
        if self.on_replica is None:
            self.on_replica = not connections[DEFAULT_DB_ALIAS].in_atomic_block and _replica_answers()
        return self.on_replica


_reads = contextvars.ContextVar("iothub_replica_reads", default=None)
# time.monotonic() before which this process does not try the replica again, after it failed to answer.
_down_until = 0.0


def configured():
    return REPLICA in settings.DATABASES


def _replica_answers():
    """Whether the replica serves this request: connected, or reconnected after the health check Django runs on
    a reused connection; a failure keeps the process off it for DB_REPLICA_RETRY_SECONDS."""
    global _down_until
    if time.monotonic() < _down_until:
        return False
    try:
        connections[REPLICA].cursor().close()
    except DatabaseError as error:
        _down_until = time.monotonic() + settings.DB_REPLICA_RETRY_SECONDS
        logger.warning(
            "the read replica does not answer (%s): reads go to the primary for %s s",
            str(error).strip(),
            settings.DB_REPLICA_RETRY_SECONDS,
        )
        with contextlib.suppress(DatabaseError):
            connections[REPLICA].close()
        return False
    return True


@contextlib.contextmanager
def telemetry_reads_from_replica():
    """Within it, telemetry reads go to the replica when one is configured and answers; else to the primary."""
    token = _reads.set(_Reads() if configured() else _Reads(on_replica=False))
    try:
        yield
    finally:
        _reads.reset(token)


def telemetry_database():
    """The alias raw SQL over telemetry and its aggregate views runs on: the router's choice for Telemetry."""
    from telemetry.models import Telemetry

    return router.db_for_read(Telemetry)


class ReadReplicaRouter:
    """Sends reads of REPLICA_MODELS to the replica inside telemetry_reads_from_replica(); everything else, and
    everything after a write, to the primary. The replica is never migrated: it replays the primary."""

    def db_for_read(self, model, **hints):
        reads = _reads.get()
        if reads is not None and model._meta.label_lower in REPLICA_MODELS and reads.use_replica():
            return REPLICA
        return None

    def db_for_write(self, model, **hints):
        reads = _reads.get()
        if reads is not None:
            reads.on_replica = False  # the request's later reads must see its write
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # The replica holds the primary's rows: a reading read there belongs to the device read on the primary.
        return True

    def allow_migrate(self, db, app_label, **hints):
        return db != REPLICA


# Read on the replica; the primary's position comes from the primary (pg_current_wal_lsn()), so the byte lag holds
# WAL received but not yet replayed as well as WAL not yet received.
_LAG_SQL = """
    SELECT pg_is_in_recovery(),
           pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()),
           extract(epoch FROM now() - pg_last_xact_replay_timestamp()),
           pg_is_wal_replay_paused()
"""


def replica_report():
    """None without a replica; else ``{"database", "lag_bytes", "lag_seconds", "replay_paused"}``.

    ``lag_bytes``: WAL the primary has written that the replica has not replayed yet. ``lag_seconds``: 0 when
    nothing is left to replay, else the age of the newest transaction the replica has replayed: how old its view
    of the data may be. Both null when the server named is not in recovery (not a replica).
    """
    if not configured():
        return None
    report = {"database": "unavailable", "lag_bytes": None, "lag_seconds": None, "replay_paused": None}
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            (primary_lsn,) = cursor.fetchone()
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(_LAG_SQL, [primary_lsn])
            in_recovery, lag_bytes, age, paused = cursor.fetchone()
    except DatabaseError:
        with contextlib.suppress(DatabaseError):
            connections[REPLICA].close()
        return report
    report["database"] = "ok"
    if in_recovery and lag_bytes is not None:
        lag_bytes = max(0, int(lag_bytes))
        report["lag_bytes"] = lag_bytes
        report["lag_seconds"] = 0.0 if lag_bytes == 0 or age is None else round(max(0.0, float(age)), 3)
        report["replay_paused"] = paused
    return report
