"""The TimescaleDB edition: the one the library serves now, and the one the database was migrated under.

Two editions run this project (docs/operations.md): ``timescale``, the community (TSL) edition of the container
image (continuous aggregates, policies, compression), and ``apache``, the Apache-2 edition (the project's own
rollups). The migrations build different objects for each, so the edition is a fact about the database: migration
``telemetry/0008_recorded_edition`` records it in ``timescaledb_edition``, and the code reads the record
(``current()``) instead of asking the library. ``check()`` refuses to go on when the library no longer serves the
recorded edition: ``migrate`` (a system check, iothub.checks), the web process (``iothub.wsgi``) and the worker
call it at start.
"""

import weakref

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection

TIMESCALE = "timescale"
APACHE = "apache"
EDITIONS = (TIMESCALE, APACHE)

# {database name: recorded edition}: a database's record never changes once written.
_recorded_cache = {}


class EditionMismatch(ImproperlyConfigured):
    """The TimescaleDB library serves another edition than the one the database was migrated under."""


# {DB-API connection: served edition}: a session's license can't change while it runs (TimescaleDB refuses), so the
# health endpoint, called every few seconds, asks once per database session, not at every call.
_served_by_session = weakref.WeakKeyDictionary()


def served(using=None):
    """The edition the TimescaleDB library serves to this session (``timescaledb.license``)."""
    db = using or connection
    db.ensure_connection()
    session = db.connection
    if session not in _served_by_session:
        with db.cursor() as cursor:
            # The setting is NULL until the extension is loaded in the session; touching its catalog loads it.
            cursor.execute("SELECT count(*) FROM timescaledb_information.hypertables")
            cursor.execute("SELECT current_setting('timescaledb.license', true)")
            license_ = cursor.fetchone()[0]
        _served_by_session[session] = TIMESCALE if license_ == TIMESCALE else APACHE
    return _served_by_session[session]


def recorded(using=None):
    """The edition the database was migrated under, or None before the migration that records it."""
    db = using or connection
    name = db.settings_dict["NAME"]
    if name not in _recorded_cache:
        with db.cursor() as cursor:
            cursor.execute("SELECT to_regclass('timescaledb_edition') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return None
            cursor.execute("SELECT edition FROM timescaledb_edition")
            row = cursor.fetchone()
            if row is None:
                return None
        _recorded_cache[name] = row[0]
    return _recorded_cache[name]


def current(using=None):
    """The edition the code works with: the recorded one; before it is recorded (mid-migration), the served one."""
    return recorded(using) or served(using)


def mismatch_message(recorded_edition, served_edition):
    """What is wrong and what to do, for a database migrated under ``recorded_edition``."""
    if recorded_edition == APACHE:
        remedy = (
            "Start PostgreSQL with `timescaledb.license = 'apache'` in postgresql.conf (the community build serves "
            "both editions)"
        )
    else:
        remedy = (
            "Install TimescaleDB's community edition (the container image's; from source: "
            "TIMESCALEDB_SOURCE=/path/to/timescaledb-2.19.3.tar.gz with make run / make test) and remove any "
            "`timescaledb.license = 'apache'` from postgresql.conf"
        )
    return (
        f"This database was migrated under TimescaleDB's {recorded_edition} edition, but the TimescaleDB library "
        f"now serves the {served_edition} edition: the aggregates, rollups and policies the migrations built are "
        f"{recorded_edition}-only. {remedy}. Databases are not converted between editions; a local development "
        "database can be recreated with `make reset` (its data is deleted)."
    )


def check(using=None):
    """Raises EditionMismatch when the library does not serve the recorded edition; returns the edition, or None
    before it is recorded (a fresh database: maybe not even the extension yet)."""
    recorded_edition = recorded(using)
    if recorded_edition is None:
        return None
    served_edition = served(using)
    if recorded_edition not in (None, served_edition):
        raise EditionMismatch(mismatch_message(recorded_edition, served_edition))
    return served_edition


def check_at_start(using=None):
    """``check()`` for a process that starts (web, worker): a database not reachable yet is not a mismatch, and
    the health endpoint reports it meanwhile; the connection is closed so the process starts with a fresh one."""
    try:
        check(using)
    except EditionMismatch:
        raise
    except DatabaseError:
        pass
    finally:
        (using or connection).close()
