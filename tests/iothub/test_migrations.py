import pytest
from django.db import connection

from iothub.migration_operations import RunSQLFile

pytestmark = pytest.mark.django_db


def _extensions():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension")
        return {name for (name,) in cursor.fetchall()}


def _table_exists(name):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def test_bootstrap_migration_created_the_extensions():
    assert {"timescaledb", "uuid-ossp"} <= _extensions()
    with connection.cursor() as cursor:
        cursor.execute("SELECT uuid_generate_v4()")
        assert cursor.fetchone()[0]


def test_run_sql_file_executes_the_whole_file_and_its_reverse(tmp_path):
    # Dollar quoting and semicolons inside a body: the file must run as one script, not split naively.
    forwards = tmp_path / "forwards.sql"
    forwards.write_text(
        "CREATE TABLE sql_loader_probe (id int);\n"
        "CREATE FUNCTION sql_loader_probe_fn() RETURNS int LANGUAGE plpgsql AS $$\n"
        "BEGIN INSERT INTO sql_loader_probe VALUES (1); RETURN 1; END; $$;\n"
        "SELECT sql_loader_probe_fn();\n"
    )
    backwards = tmp_path / "backwards.sql"
    backwards.write_text("DROP FUNCTION sql_loader_probe_fn(); DROP TABLE sql_loader_probe;")
    operation = RunSQLFile(str(forwards), reverse_path=str(backwards))

    with connection.schema_editor() as editor:
        operation.database_forwards("iothub", editor, None, None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sql_loader_probe")
        assert cursor.fetchone()[0] == 1

    with connection.schema_editor() as editor:
        operation.database_backwards("iothub", editor, None, None)
    assert not _table_exists("sql_loader_probe")


def test_noop_reverse_keeps_the_extensions():
    operation = RunSQLFile("iothub/0001_initial.sql", reverse_path=RunSQLFile.NOOP)
    assert operation.reversible
    with connection.schema_editor() as editor:
        operation.database_backwards("iothub", editor, None, None)
    assert {"timescaledb", "uuid-ossp"} <= _extensions()
    assert not RunSQLFile("x.sql").reversible
