"""Migration operations that run the hand-written SQL in ``sql/``, so a DBA reads DDL as SQL files."""

from pathlib import Path

from django.conf import settings
from django.db.migrations.operations.base import Operation

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
