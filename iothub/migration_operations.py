"""Migration operations that run the hand-written SQL in ``sql/``, so a DBA reads DDL as SQL files."""

from pathlib import Path

from django.conf import settings
from django.db.migrations.operations.base import Operation

from iothub import edition

SQL_DIR = Path(settings.BASE_DIR) / "sql"


class RunSQLFile(Operation):
    """Executes ``sql/<path>`` as one script (dollar-quoted bodies and all; no statement splitting).

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
        return f"Run SQL file sql/{self.path}"

    @staticmethod
    def _run(schema_editor, path):
        schema_editor.execute((SQL_DIR / path).read_text(), params=None)


class RunSQLFileForEdition(Operation):
    """Executes ``sql/<timescale>`` on the community (TSL) edition of TimescaleDB, else ``sql/<apache>``.

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
        return f"Run SQL file sql/{self.paths['timescale']} (TSL) or sql/{self.paths['apache']} (Apache-2)"

    @staticmethod
    def _run(schema_editor, paths):
        path = paths[edition.current(schema_editor.connection)]
        schema_editor.execute((SQL_DIR / path).read_text(), params=None)
