"""docs/schema.dbml describes the migrated database exactly: every table, view and column, and nothing stale."""

import re
from pathlib import Path

import pytest
from django.db import connection

DBML = Path(__file__).resolve().parents[1] / "docs" / "schema.dbml"
TABLE = re.compile(r"^Table\s+(\w+)[^{]*\{(.*?)^\}", re.MULTILINE | re.DOTALL)
NESTED_BLOCK = re.compile(r"^\s+\w+\s*\{.*?^\s+\}", re.MULTILINE | re.DOTALL)  # indexes { ... }
COLUMN = re.compile(r"^\s+(\w+)\s+\S", re.MULTILINE)


def documented():
    tables = {}
    for name, body in TABLE.findall(DBML.read_text()):
        tables[name] = set(COLUMN.findall(NESTED_BLOCK.sub("", body)))
    return tables


def migrated():
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, a.attname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
            """
        )
        tables = {}
        for table, column in cursor.fetchall():
            tables.setdefault(table, set()).add(column)
        return tables


@pytest.mark.django_db
def test_schema_dbml_matches_the_migrated_database():
    in_docs, in_db = documented(), migrated()
    assert sorted(set(in_db) - set(in_docs)) == [], "tables missing from docs/schema.dbml"
    assert sorted(set(in_docs) - set(in_db)) == [], "tables in docs/schema.dbml that the database lacks"
    for table, columns in in_db.items():
        assert sorted(columns - in_docs[table]) == [], f"columns of {table} missing from docs/schema.dbml"
        assert sorted(in_docs[table] - columns) == [], f"columns of {table} in docs/schema.dbml but not in the database"
