"""PreparedStatement: the two connection tricks of the ingest fast path, in one place.

Single-reading ingest is one short INSERT per request, so what surrounds the statement costs as much as the
statement itself. Measured on single-reading POSTs:

- Planning the INSERT into the hypertable cost more server CPU than executing it (≈ 0.2 ms of ≈ 0.6 ms), so the
  statement is prepared once per database session. psycopg2 has no protocol-level prepared statements, hence SQL's
  ``PREPARE``/``EXECUTE``. A prepared statement outlives a rolled-back transaction and goes with its session, so
  the sessions that have it are remembered by their psycopg2 connection (weakly: a closed one is forgotten).
- With ``CONN_HEALTH_CHECKS``, Django sends ``SELECT 1`` before the first query of each request on a reused
  connection: a round trip as long as the INSERT itself on a busy machine. The statement skips it and lets a
  broken connection show itself on the statement instead, which then runs once more on a new connection.
"""

import logging
import weakref

from django.db import InterfaceError, OperationalError, connection, transaction

logger = logging.getLogger(__name__)


class PreparedStatement:
    """An idempotent SQL statement, prepared once per database session.

    ``name`` names it in the session (``EXECUTE <name> (…)`` is what pg_stat_activity shows), ``parameter_types``
    are the SQL types of ``$1``, ``$2``…, which ``text`` uses. Both are constants of the code, never input.
    Running it twice must be harmless (``run`` may send it again after a broken connection), as for an
    ``INSERT … ON CONFLICT DO NOTHING`` whose second run finds its rows already stored.
    """

    def __init__(self, name, parameter_types, text):
        self.name = name
        self._prepare = f"PREPARE {name} ({', '.join(parameter_types)}) AS {text}"
        self._execute = f"EXECUTE {name} ({', '.join(['%s'] * len(parameter_types))})"
        self._prepared_on = weakref.WeakSet()  # psycopg2 connections whose session has the statement

    def run(self, params):
        """Runs the statement on Django's connection and returns its result (``execute``).

        Outside a transaction (the request path), in autocommit: its own transaction, committed when this returns,
        without BEGIN and COMMIT round trips (they would cost single-reading ingest ~10 %) and without Django's
        health check. A connection that broke while idle fails the statement, which is then sent once more on a new
        connection; had the first attempt committed after all (the connection broke after COMMIT), the second finds
        its work done. Inside the caller's transaction, in a savepoint, so that a failure does not abort it.
        """
        if connection.in_atomic_block:
            with transaction.atomic(), connection.cursor() as cursor:
                return self.execute(cursor, params)
        reused = connection.connection is not None
        # Django's flag (it has no public switch): this request's health check is done, by the retry below.
        connection.health_check_done = True
        try:
            with connection.cursor() as cursor:
                return self.execute(cursor, params)
        except (OperationalError, InterfaceError):
            if not reused or connection.is_usable():  # no round trip on a connection psycopg2 knows is broken
                raise
            logger.info("%s: the database connection was broken; sending the statement on a new one", self.name)
            connection.close()
        with connection.cursor() as cursor:
            return self.execute(cursor, params)

    def forget(self, cursor):
        """Removes the statement from the session of ``cursor`` if it has it (``DEALLOCATE``): the next run prepares
        it afresh, and PostgreSQL chooses between its generic and custom plans again from its first executions."""
        session = cursor.connection
        if session in self._prepared_on:
            cursor.execute(f"DEALLOCATE {self.name}")
            self._prepared_on.discard(session)

    def execute(self, cursor, params):
        """Runs the statement on ``cursor`` (Django's or psycopg2's), in its transaction if any, preparing it first
        in a session that lacks it; returns the rows it returns (a list of tuples), or its row count if it returns
        none."""
        session = cursor.connection  # psycopg2's connection, also through Django's cursor wrapper
        if session not in self._prepared_on:
            cursor.execute(self._prepare)
            self._prepared_on.add(session)
        cursor.execute(self._execute, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount
