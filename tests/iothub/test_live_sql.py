"""The live SQL files (sql/functions/, sql/views/, sql/triggers/) are what the database runs: each one is applied by
a migration naming its current hash, the migrated database holds exactly their definitions, and the migrations
work from scratch (the test database) and from a database migrated before the live files existed."""

import re

import pytest
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader

from iothub.migration_operations import HISTORY_DIR, SQL_DIR, RunLiveSQL, live_sql_sha256
from tests.conftest import manage_on_test_database

LIVE_DIRS = ("functions", "views", "triggers")
# Continuous aggregates can't be replaced (CREATE OR REPLACE): history's telemetry/0002 created them, and their live
# files must say exactly what it ran. A change to one is a migration that drops and re-creates it.
CREATED_BY_HISTORY = {
    f"views/telemetry_{level}.timescale.sql": "telemetry/0002_aggregates.timescale.sql" for level in ("1m", "1h", "1d")
}


def live_files():
    """``sql/``-relative paths of the live files (the pgtrigger bodies, ``*.plpgsql``, are migrated by pgtrigger)."""
    return sorted(str(path.relative_to(SQL_DIR)) for folder in LIVE_DIRS for path in (SQL_DIR / folder).glob("*.sql"))


def live_sql_operations():
    """``{path: [RunLiveSQL, ...]}`` in the order the migrations apply them."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    plan = loader.graph.forwards_plan(loader.graph.leaf_nodes()[0])
    for leaf in loader.graph.leaf_nodes()[1:]:
        plan += [node for node in loader.graph.forwards_plan(leaf) if node not in plan]
    applied = {}
    for key in plan:
        for operation in loader.graph.nodes[key].operations:
            if isinstance(operation, RunLiveSQL):
                applied.setdefault(operation.path, []).append(operation)
    return applied


def test_every_live_file_is_applied_by_a_migration_with_its_current_hash():
    applied = live_sql_operations()
    assert set(applied) | set(CREATED_BY_HISTORY) == set(live_files())
    stale = {path: ops[-1].sha256 for path, ops in applied.items() if ops[-1].sha256 != live_sql_sha256(path)}
    assert not stale, "Live SQL changed without a migration applying it: add a migration with " + ", ".join(
        f'RunLiveSQL("{path}", "{live_sql_sha256(path)}")' for path in stale
    )


def statements(text):
    """The SQL statements of a file, comments and blank lines left out, each as one line of single spaces."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return {" ".join(statement.split()) for statement in code.split(";") if statement.strip()}


@pytest.mark.parametrize("path", sorted(CREATED_BY_HISTORY))
def test_the_live_file_of_a_continuous_aggregate_is_what_history_created(path):
    history = statements((HISTORY_DIR / CREATED_BY_HISTORY[path]).read_text())
    assert statements((SQL_DIR / path).read_text()) <= history


def definitions():
    """Every function, view and trigger of the project's schemas, as PostgreSQL prints them."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname IN ('public', 'telemetry_rollup') AND p.prokind = 'f'
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
            UNION ALL
            SELECT 'view ' || c.oid::regclass::text, pg_get_viewdef(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname IN ('public', 'telemetry_rollup') AND c.relkind IN ('v', 'm')
            UNION ALL
            SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass::text, pg_get_triggerdef(t.oid)
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE NOT t.tgisinternal AND n.nspname IN ('public', 'telemetry_rollup')
            """
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_the_database_runs_exactly_the_live_definitions(timescaledb_edition):
    other = {"timescale": ".apache.sql", "apache": ".timescale.sql"}[timescaledb_edition]
    replaceable = [path for path in live_files() if path not in CREATED_BY_HISTORY and not path.endswith(other)]
    before = definitions()
    assert any(name.startswith("function rule_matches(") for name in before)
    with transaction.atomic(), connection.cursor() as cursor:
        for path in replaceable:
            cursor.execute((SQL_DIR / path).read_text())
        after = definitions()
        transaction.set_rollback(True)
    changed = sorted(name for name in before if before[name] != after.get(name))
    assert not changed, f"the database's definitions differ from the live files: {changed}"
    assert before.keys() == after.keys()


@pytest.mark.django_db(transaction=True)
def test_migrating_a_database_from_before_the_live_files_changes_no_definition():
    before = definitions()
    # Back to the schema of the main branch before the live files (reversing RunLiveSQL leaves definitions as
    # they are), then forward: the live files replace the history definitions with identical ones.
    for app, migration in (("rules", "0008"), ("telemetry", "0007")):
        result = manage_on_test_database("migrate", "--noinput", app, migration)
        assert result.returncode == 0, result.stderr
    result = manage_on_test_database("migrate", "--noinput")
    assert result.returncode == 0, result.stderr
    assert re.search(r"Applying rules\.0009_live_sql\.\.\. OK", result.stdout), result.stdout
    connection.close()
    assert definitions() == before
