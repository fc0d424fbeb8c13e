"""The read-only database role for DBAs and dashboards (Grafana and the like): SELECT on the telemetry, its
aggregates, the device registry, the rules and the events — and nothing else (no users, tokens, channels, whose
targets hold secrets, or notifications). ``manage.py readonly_role`` creates or updates it; docs/operations.md,
"Read-only access", shows how to use it and ready queries for dashboards.

The role is cluster-wide in PostgreSQL, the grants per database. Creating it needs CREATEROLE (the container
image's database owner is a superuser; ``make run`` and ``make test`` give their app role CREATEROLE); a DBA runs
the command with such a role otherwise. Without a password the role is NOLOGIN: nobody can log in as it until one
is given.
"""

from django.db import connection
from psycopg2 import sql

ROLE = "iothub_readonly"
# What it reads: relations in the public schema, the same on both TimescaleDB editions.
READABLE = (
    "telemetry",
    "telemetry_1m",
    "telemetry_1h",
    "telemetry_1d",
    "device_types",
    "devices",
    "rules",
    "events",
)


def ensure(password=None, role=ROLE):
    """Creates the role if missing and makes its rights exactly ``READABLE``; returns what was done, as text.

    Idempotent. ``password`` None or empty: NOLOGIN. Every other table, view and sequence of the schema loses
    any right the role had, so a grant made by hand does not linger."""
    identifier = sql.Identifier(role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = %s)", [role])
        existed = cursor.fetchone()[0]
        if not existed:
            cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(identifier))
        if password:
            cursor.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD %s").format(identifier), [password])
        else:
            cursor.execute(sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(identifier))
        cursor.execute("SELECT current_database()")
        database = sql.Identifier(cursor.fetchone()[0])
        cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, identifier))
        cursor.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(identifier))
        cursor.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(identifier))
        cursor.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(identifier))
        cursor.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier("public", name) for name in READABLE), identifier
            )
        )
    login = "LOGIN" if password else "NOLOGIN (no password given)"
    return f"Role {role} {'updated' if existed else 'created'}: {login}, SELECT on {', '.join(READABLE)}."


def drop(role=ROLE):
    """Revokes what ``ensure`` granted in this database and drops the role (it must have no rights elsewhere)."""
    identifier = sql.Identifier(role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        database = sql.Identifier(cursor.fetchone()[0])
        cursor.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(identifier))
        cursor.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(identifier))
        cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(database, identifier))
        cursor.execute(sql.SQL("DROP ROLE {}").format(identifier))
