"""Migration operations that run the hand-written SQL in ``sql/``, so a DBA reads DDL as SQL files (sql/README.md).

Two kinds of file:

- ``sql/history/<app>/<migration>.sql``: what one migration did (tables, constraints, the first definitions),
  frozen once the migration exists, so a fresh database replays history. ``RunSQLFile`` and
  ``RunSQLFileForEdition`` run them.
- ``sql/functions/``, ``sql/views/``, ``sql/triggers/``: one file per live object (``CREATE OR REPLACE``), its
  current definition. ``RunLiveSQL`` applies one; each migration that does names the file's SHA-256, so a test
  (tests/iothub/test_live_sql.py) fails when a live file changed and no migration applies the change yet.
"""

import hashlib
from pathlib import Path

from django.conf import settings
from django.db.migrations.operations.base import Operation

from iothub import edition

SQL_DIR = Path(settings.BASE_DIR) / "sql"
HISTORY_DIR = SQL_DIR / "history"
# Suffixes of live files that exist for one edition only.
EDITION_SUFFIXES = {f".{name}.sql": name for name in edition.EDITIONS}


class RunSQLFile(Operation):
    """Executes ``sql/history/<path>`` as one script (dollar-quoted bodies and all; no statement splitting).

    ``reverse_path`` names the file that undoes it; ``NOOP`` makes reversing do nothing (extensions stay); with
    neither, the migration is irreversible.
    """

    NOOP = ""
    reduces_to_sql = True

    def __init__(self, path, reverse_path=None):
        self.path = path
        self.reverse_path = reverse_path

    @property
    def reversible(self):
        return self.reverse_path is not None

    def deconstruct(self):
        kwargs = {} if self.reverse_path is None else {"reverse_path": self.reverse_path}
        return self.__class__.__qualname__, [self.path], kwargs

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run(schema_editor, self.path)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if self.reverse_path:
            self._run(schema_editor, self.reverse_path)

    def describe(self):
        return f"Run SQL file sql/history/{self.path}"

    @staticmethod
    def _run(schema_editor, path):
        schema_editor.execute((HISTORY_DIR / path).read_text(), params=None)


class RunSQLFileForEdition(Operation):
    """Executes ``sql/history/<timescale>`` on the community (TSL) edition of TimescaleDB, else ``<apache>``.

    The edition is the database's recorded one (iothub.edition), or before it is recorded the one the library
    serves, so one migration serves the container image (continuous aggregates) and the Apache-2 edition (plain
    views). ``reverse_timescale``/``reverse_apache`` undo
    them; without both, the migration is irreversible.
    """

    reduces_to_sql = True

    def __init__(self, timescale, apache, reverse_timescale=None, reverse_apache=None):
        self.paths = {"timescale": timescale, "apache": apache}
        self.reverse_paths = {"timescale": reverse_timescale, "apache": reverse_apache}

    @property
    def reversible(self):
        return None not in self.reverse_paths.values()

    def deconstruct(self):
        kwargs = {**self.paths}
        kwargs.update({f"reverse_{edition}": path for edition, path in self.reverse_paths.items() if path})
        return self.__class__.__qualname__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._run(schema_editor, self.paths)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._run(schema_editor, self.reverse_paths)

    def describe(self):
        return f"Run SQL file sql/history/{self.paths['timescale']} (TSL) or {self.paths['apache']} (Apache-2)"

    @staticmethod
    def _run(schema_editor, paths):
        path = paths[edition.current(schema_editor.connection)]
        schema_editor.execute((HISTORY_DIR / path).read_text(), params=None)


def live_sql_sha256(path):
    """The SHA-256 of ``sql/<path>`` as ``RunLiveSQL`` records it."""
    return hashlib.sha256((SQL_DIR / path).read_bytes()).hexdigest()


class RunLiveSQL(Operation):
    """Applies the live definition of one object, ``sql/<path>`` (``CREATE OR REPLACE``), as it is now.

    ``sha256`` is the file's hash when the migration was written: the latest migration applying a file must name
    its current hash (tests/iothub/test_live_sql.py), so a changed definition always comes with a migration that
    applies it to existing databases. On a fresh database every such migration runs today's text, which therefore
    must run at each point in history where it is applied (otherwise give the older migration a frozen copy in
    sql/history/). A file named ``*.timescale.sql`` or ``*.apache.sql`` is applied on that edition only. Reversing
    does nothing: the definition a migration replaced is not known here (an earlier migration's file).
    """

    reduces_to_sql = True
    reversible = True

    def __init__(self, path, sha256):
        self.path = path
        self.sha256 = sha256

    @property
    def edition(self):
        """The edition the file is for, or None for both."""
        return next((name for suffix, name in EDITION_SUFFIXES.items() if self.path.endswith(suffix)), None)

    def deconstruct(self):
        return self.__class__.__qualname__, [self.path, self.sha256], {}

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if self.edition in (None, edition.current(schema_editor.connection)):
            schema_editor.execute((SQL_DIR / self.path).read_text(), params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return f"Apply sql/{self.path}"
